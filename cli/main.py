"""The ``captioner`` group: logging set-up, then one command group per component."""

from __future__ import annotations

import logging
import os
import sys

import click

from cli import (
    compare,
    data,
    demo,
    evaluate,
    feedback,
    package,
    page,
    registry,
    rollout,
    serve,
    train,
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    """Image captioning: data, training, evaluation, scoring."""
    _setup_logging(verbose)


for command in (
    data.data,
    train.train,
    evaluate.evaluate,
    evaluate.score,
    compare.compare,
    package.export_command,
    package.package,
    demo.demo,
    serve.serve,
    page.ui_command,
    feedback.feedback,
    registry.registry_group,
    rollout.rollout,
):
    main.add_command(command)
