"""The Dask tasks: read one piece, split each batch into valid and rejected rows, write them; then
merge a partition's small files into one.

Arguments are small and picklable; the task opens its own files and clients. It returns counts
and file names, never data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
from distributed.diagnostics.plugin import WorkerPlugin

from processing.adapters.merger import merge_files
from processing.adapters.sources.base import Piece
from processing.adapters.storage import filesystem, put_bytes, transient_storage_errors
from processing.adapters.user_id_key import worker_pseudonymiser
from processing.adapters.writer import PieceWriter, WriteOptions
from processing.logic import profile as prof
from processing.logic.batch import event_names, split_batch
from processing.logic.compaction import Merge
from processing.logic.layout import EVENTS, Layout
from processing.logic.manifest import FileInfo, PieceResult
from processing.spec import schema as s
from processing.spec.errors import (
    InputError,
    PipelineError,
    SessionExpiredError,
    TransientError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskContext:
    date: dt.date
    #: the staging the task writes into (the run's id, or its attempt's)
    run_id: str
    dest: str
    batch_rows: int
    write: WriteOptions
    #: names the attempt's files (drawn once per attempt: see processing.logic.layout)
    tag: str
    #: distinct valid event names a day may have (each is a partition: a directory of files)
    max_event_names: int = 1000
    #: reads of a piece again after a transient failure, in its task (waits 1, 2, 4... s)
    retries: int = 2
    retry_wait_seconds: float = 1.0
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: the file of the key that pseudonymises user ids, and the key's id (None: raw ids)
    user_id_key_file: str | None = None
    user_id_key_id: str | None = None


def warm_up(date: dt.date) -> None:
    """Run the transform once on two rows (one valid, one not), on a worker, before the pieces.

    The first validation registers Pandera's backends and compiles patterns, and the first
    conversions import modules lazily (``pyarrow.pandas_compat``); done once here, on one thread,
    instead of by every task thread at once behind Python's import lock (which cost the first
    pieces 0.4-0.8 s each on 2 cores, and can fail a lazy import half done in another thread).
    """
    import pyarrow.pandas_compat  # noqa: F401  (imported on first use, by any thread)

    start = dt.datetime.combine(date, dt.time(12), tzinfo=dt.UTC)
    rows = [
        (start, "view", {"platform": "web", "id": "u1"}, {"name": "Mouse", "SKU": "SKU-1"}),
        (None, " ", None, None),
    ]
    batch = pa.table(
        [pa.array(column) for column in zip(*rows, strict=True)], schema=s.INPUT_SCHEMA
    )
    split_batch(batch, date, "warm-up")


class WarmUp(WorkerPlugin):
    """:func:`warm_up` on every worker of the cluster: those there when the run starts and those
    that join later (an adaptive cluster starts with none), before the worker runs a task."""

    name = "events-lake-warm-up"

    def __init__(self, date: dt.date) -> None:
        self.date = date

    def setup(self, worker: Any) -> None:
        warm_up(self.date)


def _read(piece: Piece, batch_rows: int) -> Iterator[pa.Table]:
    """The piece's batches; a source that cannot be read says which file and piece, and whether
    to retry."""
    path = piece.args.get("path")
    where = f"{path} (piece {piece.id})" if path else f"piece {piece.id}"
    batches = piece.read(batch_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (ConnectionError, TimeoutError) as e:
            raise TransientError(f"{where}: reading failed: {e}") from e
        except (OSError, pa.ArrowException, EOFError, UnicodeError, zlib.error) as e:
            # pyarrow reports corrupt Parquet as OSError: a retry would read the same bytes
            raise InputError(f"{where}: the source is corrupt or not events: {e}") from e
        yield batch


def too_many_event_names(date: dt.date, found: int, limit: int, names: Iterable[str]) -> InputError:
    """The day has more distinct event names than partitions it may make (a guard against an
    upstream change that puts ids or free text into the name): nothing is published."""
    shown = ", ".join(sorted(names)[:5])
    return InputError(
        f"{date} has more than {limit} distinct valid event names ({found} seen, e.g. {shown}): "
        "each would be a partition of its own. Nothing was published; if the day really has "
        f"that many, raise --max-event-names (PROCESSING_MAX_EVENT_NAMES, {limit})"
    )


def process_piece(piece: Piece, ctx: TaskContext) -> PieceResult:
    """Read, split and write one piece into the staging, then record it as completed (beside
    the staging: a retried ``process`` keeps it). A transient failure (a connection reset, a
    busy store) reads the piece again from its start, in this task, up to ``ctx.retries``
    times; its partly written files are removed first."""
    for attempt in range(ctx.retries + 1):
        try:
            return _process_once(piece, ctx)
        except SessionExpiredError:
            raise  # every piece needs a new session: the client plans one
        except TransientError as e:
            if attempt >= ctx.retries:
                raise
            wait = ctx.retry_wait_seconds * 2**attempt
            log.warning(
                "piece %s: %s; reading it again in %g s (retry %d of %d)",
                piece.id, e, wait, attempt + 1, ctx.retries,
            )  # fmt: skip
            time.sleep(wait)
    raise AssertionError("unreachable")


def piece_record(piece: Piece, result: PieceResult) -> bytes:
    """The record of a completed piece: its key (the same piece in another plan) and result."""
    return json.dumps({"key": piece.key, "result": asdict(result)}).encode()


def _process_once(piece: Piece, ctx: TaskContext) -> PieceResult:
    started = time.perf_counter()
    fs, root = filesystem(ctx.dest, ctx.storage_options)
    layout = Layout(root)
    events_dir, rejected_dir = layout.staged(ctx.date, ctx.run_id)
    writer = PieceWriter(fs, events_dir, rejected_dir, piece.index, ctx.write, tag=ctx.tag)
    rows_read = rows_valid = rows_rejected = 0
    reasons: Counter[str] = Counter()
    profiles: list[prof.Profile] = []
    names: set[str] = set()
    pseudonymiser = None
    if ctx.user_id_key_file is not None and ctx.user_id_key_id is not None:
        pseudonymiser = worker_pseudonymiser(ctx.user_id_key_file, ctx.user_id_key_id)
    try:
        for batch in _read(piece, ctx.batch_rows):
            result = split_batch(batch, ctx.date, piece.id, rows_read, pseudonymiser)
            names |= event_names(result.valid)
            if len(names) > ctx.max_event_names:  # before writing a partition for each
                raise too_many_event_names(ctx.date, len(names), ctx.max_event_names, names)
            writer.add(result)
            rows_read += result.rows_read
            rows_valid += result.valid.num_rows
            rows_rejected += result.rejected.num_rows
            reasons.update(result.reasons)
            profiles.append(result.profile)
        files = writer.close()
        done = PieceResult(
            piece=piece.id,
            rows_read=rows_read,
            rows_valid=rows_valid,
            rows_rejected=rows_rejected,
            rejected_by_reason=dict(reasons),
            files=tuple(files),
            seconds=time.perf_counter() - started,
            profile=prof.add(profiles),
            user_id_key_id=ctx.user_id_key_id,
        )
        record = f"{layout.piece_records(ctx.date, ctx.run_id)}/{piece.index:05d}.json"
        put_bytes(fs, record, piece_record(piece, done))
    except PipelineError:
        writer.abort()
        raise
    except (ConnectionError, TimeoutError) as e:
        writer.abort()
        raise TransientError(f"piece {piece.id}: {type(e).__name__}: {e}") from e
    except transient_storage_errors() as e:  # writing to the destination
        writer.abort()
        raise TransientError(f"piece {piece.id}: writing failed: {e}") from e
    except Exception:
        writer.abort()
        raise
    return done


def merge_task(merge: Merge, ctx: TaskContext) -> FileInfo:
    """Write one merge's file into the staging (its sources stay: the client deletes them once
    every merge is written, so a retried merge finds them)."""
    # what the pieces' tasks freed goes back to the system first: a merge's buffers come on
    # top of what the allocator kept, and set the worker's peak (benchmarks/README.md, "Scale")
    pa.default_memory_pool().release_unused()
    fs, root = filesystem(ctx.dest, ctx.storage_options)
    events_dir, rejected_dir = Layout(root).staged(ctx.date, ctx.run_id)
    directory = events_dir if merge.dataset == EVENTS else rejected_dir
    try:
        rows, size = merge_files(
            fs,
            [f"{directory}/{f.path}" for f in merge.sources],
            f"{directory}/{merge.into}",
            ctx.write,
        )
    except transient_storage_errors() as e:
        raise TransientError(f"merging into {merge.into}: {e}") from e
    return FileInfo(merge.dataset, merge.into, rows, size, merge.event_name)
