"""The storage operations of the publish protocol that a crash or a pause can fall between:
the object-store interface's writes (:mod:`processing.adapters.lake_store`) and the manifests'
compare-and-swap (:mod:`processing.adapters.date_manifests`). Tests wrap them to inject a fault
before one of them. Test code only: nothing in the package knows about it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processing.adapters import date_manifests
from processing.adapters.date_lock import DateLock, Holder
from processing.adapters.lake_store import LakeStore, LocalLakeStore, S3LakeStore

#: operation name -> where it is defined (every store, or each kind of store)
STEPS: dict[str, list[Any]] = {
    "put_json": [LakeStore],  # a small JSON object, whole (the staged manifest)
    "remove_marker": [LakeStore],  # the date's _SUCCESS removed
    "put_marker": [LakeStore],  # the date's _SUCCESS written
    "copy": [LakeStore],  # files copied in (copy many)
    "swap": [date_manifests],  # a manifest switched (conditional put)
    "delete": [LakeStore],  # listed files deleted (delete many)
    "remove_tree": [LocalLakeStore, S3LakeStore],  # a staging removed
}


def wrap_steps(
    setattr_: Callable[[Any, str, Any], None],
    before: Callable[[str], None],
    only: str | None = None,
) -> None:
    """Call ``before(name)`` just before every storage operation (only ``only``, if given),
    installing the wrappers with ``setattr_`` (``monkeypatch.setattr``, or ``setattr``)."""
    for name, owners in STEPS.items():
        if only is not None and name != only:
            continue
        for owner in owners:
            real = getattr(owner, name)

            def step(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                before(_name)
                return _real(*args, **kwargs)

            setattr_(owner, name, step)


class Crash(BaseException):
    """A process dying just before a storage step (a BaseException: nothing catches it)."""


def steps_of(command: Callable[[], Any]) -> list[str]:
    """The storage steps ``command`` takes, in order (it runs once, whole)."""
    steps: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        wrap_steps(patch.setattr, steps.append)
        command()
    return steps


def killed_before(step: int, command: Callable[[], Any]) -> None:
    """Run ``command`` as a process killed just before its ``step``-th storage step (counting
    from 0): :class:`Crash` is raised there, and the date's lock is left as a dead process
    leaves it (not released: it still names the holder and any open publish)."""
    calls = iter(range(step + 1))

    def before(name: str) -> None:
        if next(calls, None) == step:
            raise Crash(name)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Crash):
        wrap_steps(patch.setattr, before)
        patch.setattr(DateLock, "release", lambda self: None)
        command()


def after_its_lock_expired(command: Callable[[], Any]) -> Any:
    """Run ``command`` later, when every lock a dead process left has expired."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Holder, "expired", lambda self, now: True)
        return command()
