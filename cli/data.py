"""``captioner data``: what of a dataset is present, its vocabulary and checks; ``data fetch``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.common import build_settings, fail

data_root_option = click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="where real datasets live [env CAPTIONER_DATA_ROOT, default ../shared/data or data]",
)


@click.group(invoke_without_command=True)
@click.option(
    "--dataset",
    default="shapes[train]",
    show_default=True,
    help="spec of the split the vocabulary is built from",
)
@data_root_option
@click.option("--min-count", type=int, default=1, show_default=True)
@click.pass_context
def data(ctx: click.Context, dataset: str, data_root: Path | None, min_count: int) -> None:
    """Report what of a dataset is present, build its vocabulary and run the data checks.

    `captioner data fetch NAME` downloads a dataset first.
    """
    if ctx.invoked_subcommand is not None:
        return
    from captioner.text import Vocabulary
    from training.datasets.base import DatasetError
    from training.datasets.registry import DATASETS, survey
    from training.datasets.spec import SpecError, parse_spec
    from training.datasets.validation import validate
    from training.settings import DataSettings

    root = build_settings(DataSettings, data_root=data_root).data_root
    try:
        spec = parse_spec(dataset, DATASETS)
        found = {s: survey(spec.with_split(s), root) for s in ("train", "val", "test")}
    except (SpecError, DatasetError) as exc:
        fail(exc)
    click.echo(f"{spec.name} under {root}")
    for name, split in found.items():
        line = f"{name}: {len(split.present)} of {split.total} images present"
        if split.missing:
            line += f" ({len(split.missing)} missing, first: {', '.join(split.missing[:3])})"
        click.echo(f"{line}, {split.captions} captions")
    empty = [name for name, split in found.items() if not split.present]
    if empty:
        raise click.ClickException(
            f"no image of {', '.join(empty)} is present under {root}: "
            f"fetch it (captioner data fetch) or set --data-root"
        )
    splits = {name: split.present for name, split in found.items()}
    vocab = Vocabulary.build(splits["train"].all_captions(), min_count)
    click.echo(
        f"vocabulary: {len(vocab)} tokens at min count {min_count} (from the train captions "
        f"present), max length {vocab.max_length} words"
    )
    checks = validate(splits["train"], [splits["val"], splits["test"]], vocab)
    for check in checks:
        click.echo(f"[{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    if not all(c.passed for c in checks):
        raise SystemExit(1)


@data.command("fetch")
@click.argument("name", required=False)
@data_root_option
@click.option(
    "--mirror",
    help="base URL or local folder with the archives [env CAPTIONER_DATA_MIRROR]",
)
@click.option(
    "--sources",
    type=click.Path(path_type=Path),
    help="another sources table (TOML) [env CAPTIONER_DATA_SOURCES]",
)
@click.option("--retries", type=int, help="attempts per URL after a failure [default 3]")
@click.option("--keep-archives", is_flag=True, default=None, help="keep the downloaded archives")
def data_fetch(
    name: str | None,
    data_root: Path | None,
    mirror: str | None,
    sources: Path | None,
    retries: int | None,
    keep_archives: bool | None,
) -> None:
    """Download, verify and unpack dataset NAME under the data root (no NAME: list them).

    Resumes an interrupted download, checks the archive's size and digests before
    unpacking, unpacks all or nothing, and does nothing when the dataset is present.
    """
    from training.datasets.download import FetchError, human_bytes
    from training.datasets.fetch import fetch
    from training.datasets.sources import SourceError, load_sources
    from training.settings import DataSettings

    settings = build_settings(
        DataSettings,
        data_root=data_root,
        data_mirror=mirror,
        data_sources=sources,
        fetch_retries=retries,
        keep_archives=keep_archives,
    )
    try:
        table = load_sources(settings.data_sources)
        if name is None:
            for key, entry in sorted(table.datasets.items()):
                click.echo(f"{key:18} {entry.description}")
            return
        result = fetch(
            name,
            settings.data_root,
            table,
            mirror=settings.data_mirror,
            retries=settings.fetch_retries,
            keep_archives=settings.keep_archives,
            progress=sys.stderr.isatty(),
        )
    except (SourceError, FetchError) as exc:
        fail(exc)
    for part in result.parts:
        detail = f"sha256 {part.sha256}" if part.sha256 else "not verified: laid out by hand"
        if part.pinned:
            detail += " (pinned: the table publishes no digest)"
        click.echo(f"{part.archive}: {part.status} ({detail})")
    click.echo(f"downloaded {human_bytes(result.downloaded)} into {result.data_root}")
    if result.manual:
        for step in result.manual:
            click.echo(f"\nTo do by hand, {step.what}:\n{step.text(result.data_root)}", err=True)
        raise click.ClickException(f"{name} is not complete: {len(result.manual)} step(s) by hand")
    loader = {"flickr8k-karpathy": "flickr8k"}.get(result.dataset, result.dataset)
    click.echo(
        f"check it: captioner data --dataset '{loader}[train]' --data-root {result.data_root}"
    )
