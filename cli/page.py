"""``captioner ui``: the Streamlit page, with the feedback store it writes to."""

from __future__ import annotations

import sys

import click

from cli.common import build_settings


@click.command("ui")
@click.option("--port", type=int, help="Streamlit port [env CAPTIONER_UI_PORT, default 8501]")
@click.option("--service-url", help="inference service [env CAPTIONER_SERVICE_URL]")
def ui_command(port: int | None, service_url: str | None) -> None:
    """The Streamlit page: caption images, give feedback (stored in MongoDB).

    Without MONGODB_URI a local nx-27017 (MongoDB wire protocol over SQLite) is started.
    """
    from ui.launch import run
    from ui.settings import UISettings

    sys.exit(run(build_settings(UISettings, ui_port=port, service_url=service_url)))
