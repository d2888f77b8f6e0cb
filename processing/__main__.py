"""``python -m processing``: the CLI (see processing.app.cli)."""

import gc

from processing.app.cli import main

code = main()
# The process ends here: spare the final garbage collections a walk over every object the run
# created (Dask, the dashboard), which takes a quarter of a second on 2 cores.
gc.freeze()
raise SystemExit(code)
