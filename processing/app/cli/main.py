"""``python -m processing`` (and the ``events-lake`` command): the single entry point for
people, Airflow and Kubernetes.

Exit codes: 0 success; 2 configuration error; 3 input error; 4 audit failed, lock lost, or
damage found (nothing published); 5 another run holds the date's lock; 75 transient failure
(retry); 130 / 143 stopped by SIGINT / SIGTERM (the lock released); 1 anything unexpected.
Errors print one line on stderr (see ``parser.EXIT_CODES``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from processing.app.cli import (
    lake_commands,
    parser,
    plan_commands,
    protect_commands,
    retention_commands,
    tool_commands,
)
from processing.spec.errors import Interrupted, PipelineError, Terminated, signal_of

log = logging.getLogger("processing")


def _on_terminate(signal_number: int, frame: object) -> None:
    """SIGTERM (Kubernetes stopping the pod, Airflow killing the task): stop the work like
    Ctrl-C, so the lock is released and the summary says what was published; a second one
    exits at once."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    raise Terminated(signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    args = parser.build().parse_args(argv)
    handled = args.command != "emulator" and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_terminate) if handled else None
    try:
        commands = {
            "run": lake_commands.run,
            "plan": plan_commands.plan,
            "capacity": plan_commands.capacity,
            "rollback": lake_commands.rollback,
            "gc": lake_commands.collect_garbage,
            "verify": lake_commands.verify,
            "catalog": lake_commands.catalog,
            "expire": retention_commands.expire,
            "forget": protect_commands.forget,
            "emulator": tool_commands.emulator,
            "generate": tool_commands.generate,
        }
        return commands[args.command](args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        what = "terminated" if e.signal_number == signal.SIGTERM else "interrupted"
        if e.publishing:
            print(
                f"{what}: the publish had begun; the lock was released with it, and the next "
                "run of the date completes it",
                file=sys.stderr,
            )
        else:
            print(f"{what}: the lock was released; nothing was published", file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, Terminated) as e:
        signal_number = signal_of(e)
        what = "terminated" if signal_number == signal.SIGTERM else "interrupted"
        print(f"{what}: nothing was published by this command", file=sys.stderr)
        return 128 + int(signal_number)
    except Exception as e:  # a bug, or a storage failure no stage translated
        from processing.adapters.storage_errors import translate

        translated = translate(e)
        if translated is not None:
            print(f"error: {translated}", file=sys.stderr)
            return translated.exit_code
        log.exception("unexpected error")
        print(
            f"error: unexpected {type(e).__name__}: {e} (a bug: please report it)", file=sys.stderr
        )
        return PipelineError.exit_code
    finally:
        if handled:
            signal.signal(signal.SIGTERM, previous)
