"""Run the CLI, but stop this whole process (SIGSTOP, as a node under pressure or a long pause
would) just before the Nth call of one storage operation of the publish protocol.

    python -m tests.faults.suspend_at OPERATION N -- run --date ... (the CLI's arguments)

OPERATION is one of processing.adapters.publish's primitives (``_copy``, ``_swap``, ``_delete``,
``_remove_tree``, ``_put_json``), or ``merge_files`` (a merge of small staged files, in a task of
the run's LocalCluster, whose workers are threads of this process). Just before stopping it
prints ``suspended before OPERATION #N`` on stderr; the test then lets the lock expire, runs
another command, and resumes it (SIGCONT), or kills it.
Test code only: nothing in the package knows about it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main(argv: list[str]) -> int:
    operation, nth, separator, *cli_args = argv
    assert separator == "--", "usage: suspend_at OPERATION N -- CLI ARGS"
    from processing.adapters import publish
    from processing.app import piece_task
    from processing.app.cli import main as cli

    module: Any = piece_task if operation == "merge_files" else publish
    real = getattr(module, operation)
    calls = 0

    def suspended(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == int(nth):
            print(f"suspended before {operation} #{nth}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return real(*args, **kwargs)

    setattr(module, operation, suspended)
    return cli(cli_args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
