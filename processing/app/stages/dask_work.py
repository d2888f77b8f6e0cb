"""The Dask part of ``process``: one task per piece, one per merged file, and Dask's
performance report of the work."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, as_completed, get_client, performance_report
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from processing.adapters import reports
from processing.adapters.sources import Piece
from processing.app.piece_task import TaskContext, WarmUp, merge_task, process_piece
from processing.logic.compaction import Merge
from processing.logic.layout import EVENTS, Layout
from processing.logic.manifest import FileInfo, PieceResult
from processing.logic.progress import ProgressMeter
from processing.spec.errors import TransientError

log = logging.getLogger(__name__)

Progress = Callable[[int, int, PieceResult], None]


@contextmanager
def performance_recorded(
    enabled: bool, fs: Any, layout: Layout, ctx: TaskContext
) -> Iterator[list[dict[str, Any]]]:
    """Record Dask's performance report of the block (task stream, worker profiles, bandwidth)
    into the run's staging, as a self-contained HTML page; its manifest entry is added to the
    list yielded. Only a block that succeeds gets one; a report that cannot be made is a
    warning, never a failed run."""
    kept: list[dict[str, Any]] = []
    if not enabled:
        yield kept
        return
    tmp = None
    try:
        tmp = tempfile.mkdtemp(prefix="events-lake-")
        path = os.path.join(tmp, "dask-performance.html")
        recorder = performance_report(filename=path, mode="inline")
        recorder.__enter__()
    except Exception as e:
        log.warning("no Dask performance report: %s: %s", type(e).__name__, e)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
    if tmp is None:  # outside the handler: the block's own errors are not chained to it
        yield kept
        return
    try:
        yield kept
        began = time.perf_counter()
        try:
            # its "calling code" section says what ran, not which line of ours called Dask
            what = f"events-lake: {ctx.date}, run {ctx.run_id} (tag {ctx.tag})"
            get_client().sync(recorder.__aexit__, None, None, None, code=what)
            with open(path, "rb") as f:
                data = titled(f.read(), f"{ctx.date}, run {ctx.run_id}")
            kind = reports.DASK_PERFORMANCE
            kept.append(
                reports.write(fs, layout, ctx.date, ctx.run_id, tag=ctx.tag, kind=kind, data=data)
            )
            log.info("Dask performance report in %.2f s", time.perf_counter() - began)
        except Exception as e:
            log.warning("no Dask performance report: %s: %s", type(e).__name__, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TITLE = "Dask Performance Report"


def titled(page: bytes, name: str) -> bytes:
    """The report's page titled with the date and the run (its window title and heading)."""
    title = f"Dask performance report: {name}"
    page = page.replace(f"<title>{_TITLE}</title>".encode(), f"<title>{title}</title>".encode())
    heading = "&lt;h1&gt; {} &lt;/h1&gt;"
    return page.replace(heading.format(_TITLE).encode(), heading.format(title).encode(), 1)


def process_pieces(
    client: Client,
    pieces: Sequence[Piece],
    ctx: TaskContext,
    on_progress: Progress | None,
    attempt: int = 1,
) -> list[PieceResult]:
    """One lazy task per piece, computed once; progress logged every 10 s and at the end.

    Task keys name the attempt: the scheduler may still hold the failed tasks of an earlier
    attempt under their keys, and would hand back their errors instead of running the new plan.
    """
    client.register_plugin(WarmUp(ctx.date))  # every worker, before its task threads start
    tasks = [
        dask.delayed(process_piece, pure=False)(
            piece, ctx, dask_key_name=f"piece-{piece.index:05d}-{ctx.run_id}-{attempt}"
        )
        for piece in pieces
    ]
    futures = client.compute(tasks)  # a lost worker's task reruns (task_retries)
    results: list[PieceResult] = []
    meter = ProgressMeter(total=len(futures), started=time.monotonic())
    try:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_progress is not None:
                on_progress(len(results), len(futures), result)
            log.debug(
                "piece %s: %d rows (%d rejected) in %.1f s",
                result.piece,
                result.rows_read,
                result.rows_rejected,
                result.seconds,
            )
            line = meter.add(result.rows_read, time.monotonic())
            if line:
                log.info("%s", line)
    except (KilledWorker, FutureCancelledError) as e:
        raise TransientError(f"a Dask worker was lost: {e}") from e
    finally:
        client.cancel(futures)
    return results


def merge_small_files(
    client: Client, fs: Any, layout: Layout, merges: Sequence[Merge], ctx: TaskContext
) -> list[tuple[Merge, FileInfo]]:
    """Merge the pieces' small files, one task per merged file; then delete the merged ones (a
    process that dies first leaves them behind: its staging is never published, see the audit)."""
    if not merges:
        return []
    began = time.perf_counter()
    tasks = [
        dask.delayed(merge_task, pure=False)(m, ctx, dask_key_name=f"merge-{i:05d}-{ctx.run_id}")
        for i, m in enumerate(merges)
    ]
    futures = client.compute(tasks)
    try:
        written: list[FileInfo] = client.gather(futures)
    except (KilledWorker, FutureCancelledError) as e:
        raise TransientError(f"a Dask worker was lost: {e}") from e
    finally:
        client.cancel(futures)
    events_dir, rejected_dir = layout.staged(ctx.date, ctx.run_id)
    fs.rm(
        [
            f"{events_dir if m.dataset == EVENTS else rejected_dir}/{f.path}"
            for m in merges
            for f in m.sources
        ]
    )
    log.info(
        "merged %d small files into %d in %.1f s",
        sum(len(m.sources) for m in merges),
        len(merges),
        time.perf_counter() - began,
    )
    return list(zip(merges, written, strict=True))
