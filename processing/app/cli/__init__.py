"""The command line (``python -m processing``, ``events-lake``): see :mod:`.main`."""

from processing.app.cli.main import main

__all__ = ["main"]
