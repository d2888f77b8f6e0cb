"""The error hierarchy: every failure says what to fix and whether a retry can help.

The CLI maps each class to its own exit code, so Airflow (or a person) can retry only what is worth
retrying. The classes pickle cleanly because they cross from Dask workers to the client.
"""

from __future__ import annotations

import signal


class PipelineError(Exception):
    """Base class. ``exit_code`` is what ``python -m processing`` exits with."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))

    def __str__(self) -> str:
        return self.message


class ConfigError(PipelineError):
    """A setting or argument is missing or wrong. Fix the configuration; a retry will not help."""

    exit_code = 2


class InputError(PipelineError):
    """The source cannot be read as events (not found, unreadable, wrong format)."""

    exit_code = 3


class AuditError(PipelineError):
    """The run's own checks failed (counts do not reconcile, a staged file is missing).

    Nothing was published. This points at a bug or at storage losing writes: investigate first.
    """

    exit_code = 4


class TransientError(PipelineError):
    """A failure that may pass by itself (network, throttling, a lost worker). Retry the run."""

    exit_code = 75  # EX_TEMPFAIL
    retryable = True


class SessionExpiredError(TransientError):
    """A source's read session is gone (BigQuery's last 6 hours): plan again, same snapshot."""


class DateLockedError(PipelineError):
    """Another run holds the date's lock. Wait for it to finish (or its lock to expire)."""

    exit_code = 5


class LockLostError(AuditError):
    """The run's lock on its date expired and another run took it: this run must not publish."""


class DamagedError(AuditError):
    """A published (or kept) version does not match its manifest: files missing or truncated.
    ``verify`` says what; the next run of the date replaces it."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: Kubernetes, Airflow). Like KeyboardInterrupt, it
    is not an Exception: nothing on the way out may swallow it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


def signal_of(stop: KeyboardInterrupt | Terminated) -> int:
    """The signal behind a stop: SIGTERM's number for Terminated, SIGINT's for Ctrl-C."""
    return stop.signal_number if isinstance(stop, Terminated) else int(signal.SIGINT)


class Interrupted(BaseException):
    """A run (or rollback) stopped by a signal, after it released its lock. ``publishing``: its
    publish had begun, and the next run of the date completes it."""

    def __init__(self, signal_number: int, publishing: bool) -> None:
        super().__init__(signal_number, publishing)
        self.signal_number = signal_number
        self.publishing = publishing

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number
