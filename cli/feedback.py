"""``captioner feedback export``: what users said on the page, as a dataset training reads."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import build_settings, fail


@click.group()
def feedback() -> None:
    """Feedback that users gave on the page (MongoDB, docs/architecture.md)."""


@feedback.command("export")
@click.option("--since", help="only feedback from this day on (YYYY-MM-DD)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="dataset folder")
@click.option("--mongodb-uri", help="[env MONGODB_URI]")
@click.option("--database", help="[env CAPTIONER_MONGODB_DATABASE, default captioner]")
def feedback_export(
    since: str | None, out: Path, mongodb_uri: str | None, database: str | None
) -> None:
    """Write corrections and thumbs-up captions as a dataset the training pipeline reads."""
    from datetime import UTC, datetime

    from feedback.export import NoDatabase, export_feedback
    from feedback.settings import FeedbackSettings
    from feedback.store import StoreUnavailable

    start = None
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise click.ClickException(f"--since must be YYYY-MM-DD, got {since!r}") from exc
    settings = build_settings(FeedbackSettings, mongodb_uri=mongodb_uri, mongodb_database=database)
    try:
        summary = export_feedback(settings, since=start, out=out)
    except (NoDatabase, StoreUnavailable) as exc:
        fail(exc)
    click.echo(json.dumps(summary, default=str))
