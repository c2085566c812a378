"""``python -m podlink`` is the ``podlink`` command."""

from podlink.cli import main

main()
