"""The command line (``python -m processing``, ``events-lake``): see :mod:`.main`. ``summary``
prints a run's report as ``run`` does (notebooks use it too)."""

from processing.app.cli.lake_commands import summary
from processing.app.cli.main import main

__all__ = ["main", "summary"]
