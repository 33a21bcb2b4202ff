"""``captioner serve``: the inference service over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import build_settings


@click.command()
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    help="model package directory or .tar.gz [env CAPTIONER_MODEL_DIR]",
)
@click.option("--host", help="listen address [env CAPTIONER_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="listen port [env CAPTIONER_PORT, default 8000]")
@click.option("--workers", type=int, help="uvicorn worker processes [env CAPTIONER_WORKERS]")
@click.option("--variant", type=click.Choice(["fp32", "fp16", "int8"]), help="precision variant")
def serve(**options: object) -> None:
    """Serve a model package over HTTP (REST, Open Inference Protocol V2, /metrics).

    Every other setting comes from CAPTIONER_* variables; see docs/inference.md.
    """
    from inference.server import run
    from inference.settings import ServeSettings

    run(build_settings(ServeSettings, **options))
