"""``python -m cli``: the ``captioner`` command."""

from cli.main import main

main()
