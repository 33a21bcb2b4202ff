"""``captioner serve``: the inference service over HTTP."""

from __future__ import annotations

import click

from cli.common import build_settings
from cli.registry import SCHEME, resolve_model_arg


@click.command()
@click.option(
    "--model",
    "model_dir",
    help="model package directory, .tar.gz, or registry URI (models:/captioner@champion) "
    "[env CAPTIONER_MODEL_DIR]",
)
@click.option("--host", help="listen address [env CAPTIONER_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="listen port [env CAPTIONER_PORT, default 8000]")
@click.option("--workers", type=int, help="uvicorn worker processes [env CAPTIONER_WORKERS]")
@click.option("--variant", type=click.Choice(["fp32", "fp16", "int8"]), help="precision variant")
def serve(**options: object) -> None:
    """Serve a model package over HTTP (REST, Open Inference Protocol V2, /metrics).

    A models:/ URI is resolved through the registry first (CAPTIONER_REGISTRY_* variables,
    docs/export.md), so the service, and every worker, opens a local package. Every other
    setting comes from CAPTIONER_* variables; see docs/inference.md.
    """
    from inference.server import run
    from inference.settings import ServeSettings

    settings = build_settings(ServeSettings, **options)
    model = str(settings.model_dir)
    if model.startswith(SCHEME):
        settings = settings.model_copy(update={"model_dir": resolve_model_arg(model)})
    run(settings)
