"""The key that pseudonymises user ids, read from its file (a mounted Kubernetes Secret): checked
at the start of every command that uses it, and never logged (only its key id is)."""

from __future__ import annotations

import functools
from pathlib import Path

from processing.logic.pseudonymise import MIN_KEY_BYTES, Pseudonymiser, key_id
from processing.spec.errors import ConfigError

_WHERE = "--user-id-key-file / PROCESSING_USER_ID_KEY_FILE"


def load_key(path: str) -> bytes:
    """The key's bytes (one trailing newline dropped: ``echo`` and ``printf`` make the same
    key). Raises ConfigError for a file that is missing, unreadable, empty or too short."""
    try:
        key = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{_WHERE} {path!r}: cannot read the key ({e.strerror})") from None
    key = key.removesuffix(b"\n").removesuffix(b"\r")
    if not key:
        raise ConfigError(f"{_WHERE} {path!r} is empty: it must hold the key")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{_WHERE} {path!r} holds {len(key)} bytes: a key has at least {MIN_KEY_BYTES} "
            "(make one with `head -c 32 /dev/urandom > key`, or `openssl rand -hex 32`)"
        )
    return key


@functools.lru_cache(maxsize=4)
def worker_pseudonymiser(path: str, expected_key_id: str) -> Pseudonymiser:
    """The pseudonymiser of a Dask worker process (one per key: it remembers the ids it hashed
    across the run's tasks), its key read from ``path`` and checked as :func:`worker_key` does."""
    return Pseudonymiser(worker_key(path, expected_key_id))


def worker_key(path: str, expected_key_id: str) -> bytes:
    """The key on a Dask worker, checked against the key id the run began with: a worker given
    another key fails its task instead of mixing two keys in a day."""
    key = load_key(path)
    if key_id(key) != expected_key_id:
        raise ConfigError(
            f"the user id key at {path!r} on this worker has key id {key_id(key)}, the run began "
            f"with {expected_key_id}: mount the same key on the workers and the client"
        )
    return key
