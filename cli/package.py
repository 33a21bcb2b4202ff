"""``captioner export`` (a trained model to an ONNX package) and ``captioner package verify``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import fail


@click.command("export")
@click.option(
    "--checkpoint",
    "model_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="a trained model directory (RUN/model)",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="package directory to write"
)
@click.option("--name", help="model name (default: DATASET-ARCHITECTURE)")
@click.option(
    "--version", "version_", help="model version (default: creation time and weights hash)"
)
@click.option("--variants", default="", help="comma-separated extra precisions: fp16,int8")
@click.option(
    "--register",
    is_flag=True,
    help="also register the package as a model version (CAPTIONER_REGISTRY_URI)",
)
@click.option("--alias", help="with --register: point this alias at it (e.g. challenger)")
def export_command(
    model_dir: Path,
    out: Path,
    name: str | None,
    version_: str | None,
    variants: str,
    register: bool,
    alias: str | None,
) -> None:
    """Export a trained model to an ONNX model package, parity-checked against Keras."""
    from captioner.package import PackageError
    from export.package import ExportError, build_package
    from training.models.captioner import ModelFileError

    wanted = tuple(v for v in variants.split(",") if v)
    try:
        path = build_package(model_dir, out, name, version_, variants=wanted)
    except (ExportError, ModelFileError, PackageError, ValueError) as exc:
        fail(exc)
    click.echo(f"package: {path}")
    if register or alias:
        from cli.registry import register_exported

        click.echo(json.dumps(register_exported(path, alias)))


@click.group()
def package() -> None:
    """Model packages: verify."""


@package.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def package_verify(path: Path) -> None:
    """Check a package: hashes, format, graphs, tensor names and shapes, a probe decode."""
    from captioner.package import PackageError
    from captioner.verify import verify

    try:
        result = verify(path)
    except PackageError as exc:
        fail(exc)
    package = result.package
    click.echo(f"{package.name} {package.version} ({package.architecture})")
    for check in result.checks:
        click.echo(f"[ok] {check}")
    for variant, caption in result.probe_captions.items():
        click.echo(f"probe caption ({variant}): {caption}")
