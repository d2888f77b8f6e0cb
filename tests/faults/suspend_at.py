"""Run the CLI, but stop this whole process (SIGSTOP, as a node under pressure or a long pause
would) just before the Nth call of one storage operation of the publish protocol.

    python -m tests.faults.suspend_at OPERATION N -- run --date ... (the CLI's arguments)

OPERATION is one of the publish protocol's storage operations (``copy``, ``swap``, ``delete``,
``remove_tree``, ``put_json``: see :mod:`tests.faults.storage_steps`), or ``merge_files`` (a
merge of small staged files, in a task of the run's LocalCluster, whose workers are threads of
this process). Just before stopping it prints ``suspended before OPERATION #N`` on stderr; the
test then lets the lock expire, runs another command, and resumes it (SIGCONT), or kills it.
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
    from processing.app import piece_task
    from processing.app.cli import main as cli
    from tests.faults.storage_steps import wrap_steps

    calls = 0

    def before(_name: str) -> None:
        nonlocal calls
        calls += 1
        if calls == int(nth):
            print(f"suspended before {operation} #{nth}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    if operation == "merge_files":
        real = piece_task.merge_files

        def merge_files(*args: Any, **kwargs: Any) -> Any:
            before(operation)
            return real(*args, **kwargs)

        piece_task.merge_files = merge_files  # type: ignore[assignment]
    else:
        wrap_steps(setattr, before, only=operation)
    return cli(cli_args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
