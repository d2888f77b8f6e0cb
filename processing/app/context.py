"""What every stage of a run needs from the settings: the destination, the source, the date's
lock, the size of the cluster, and one way to turn storage failures into exit codes."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import shlex
from collections.abc import Mapping
from typing import Any

from distributed import Client

from processing.adapters.date_lock import DateLock
from processing.adapters.glue_catalog import GlueCatalog
from processing.adapters.sources import BigQueryOptions, Source, open_source
from processing.adapters.storage import (
    S3Options,
    filesystem,
    redact_url,
    storage_options_for,
)
from processing.adapters.user_id_key import load_key
from processing.adapters.writer import WriteOptions
from processing.logic.bigquery_plan import SCHEME
from processing.logic.glue_catalog import TableRegistration
from processing.logic.layout import Layout
from processing.logic.pseudonymise import key_id
from processing.spec.errors import (
    ConfigError,
    PipelineError,
    TransientError,
)
from processing.spec.settings import Settings

log = logging.getLogger(__name__)


def user_id_key_id(settings: Settings) -> str | None:
    """The id of the key user ids are pseudonymised with (None: published raw): the key file is
    read and checked here, so a missing or short key fails the command before any work."""
    if settings.user_id_key_file is None:
        return None
    return key_id(load_key(settings.user_id_key_file))


def write_options(settings: Settings, *, dictionary_user_ids: bool) -> WriteOptions:
    """How the lake's Parquet files are written (the writer's settings); ``dictionary_user_ids``
    when the ids are pseudonyms."""
    return WriteOptions(
        row_group_rows=settings.row_group_rows,
        max_file_rows=settings.max_file_rows,
        max_buffered_rows=settings.max_buffered_rows,
        zstd_level=settings.zstd_level,
        max_file_bytes=settings.target_file_bytes,
        min_copied_row_group_rows=settings.min_copied_row_group_rows,
        dictionary_user_ids=dictionary_user_ids,
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(date: dt.date, now: dt.datetime) -> str:
    return f"{date.isoformat()}_{now:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


def date_lock(
    settings: Settings, fs: Any, layout: Layout, run_id: str, *, resume: bool = False
) -> DateLock:
    """The lock on ``settings.date`` for ``run_id``; ``resume``: a later stage of the same run
    (another process) takes over the run's own lock."""
    return DateLock(
        fs, layout.lock(settings.date), run_id, settings.lock_ttl_seconds, resume=resume
    )


def s3_options(settings: Settings) -> S3Options:
    return S3Options(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id,
        max_attempts=settings.s3_max_attempts,
    )


def destination(settings: Settings) -> tuple[Any, Layout, dict[str, Any]]:
    """The destination's filesystem, its layout and the fsspec options the workers use."""
    options = storage_options_for(
        settings.dest, settings.storage_options.reveal(), s3_options(settings)
    )
    fs, root = filesystem(settings.dest, options)
    return fs, Layout(root), options


def task_slots(settings: Settings) -> int:
    """Task threads of the run's cluster: the LocalCluster's, or those an existing scheduler's
    workers have now (an adaptive cluster that has none yet counts as a local one)."""
    cores = os.cpu_count() or 1
    if settings.scheduler:
        threads = _scheduler_threads(settings.scheduler)
        if threads:
            return threads
        log.warning(
            "the scheduler at %s has no workers yet: sizing the read for %d threads "
            "(set --bq-max-streams to choose)",
            settings.scheduler,
            cores,
        )
        return cores
    if settings.processes:
        return (settings.workers or cores) * (settings.threads_per_worker or 1)
    return (settings.workers or 1) * (settings.threads_per_worker or cores)


def _scheduler_threads(address: str) -> int:
    try:
        with Client(address, timeout="30s") as client:
            return sum(client.nthreads().values())
    except ValueError as e:
        raise ConfigError(f"--scheduler {address!r} is not an address: {e}") from e
    except (OSError, TimeoutError) as e:
        raise TransientError(f"cannot reach the Dask scheduler at {address}: {e}") from e


def source_for(settings: Settings) -> Source:
    """The source of ``settings``; a BigQuery one gets its options from the settings."""
    storage = storage_options_for(
        settings.source, settings.storage_options.reveal(), s3_options(settings)
    )
    if not settings.source.startswith(SCHEME):
        return open_source(settings.source, storage)
    options = BigQueryOptions(
        endpoint=settings.bq_endpoint,
        billing_project=settings.billing_project,
        time_column=settings.bq_time_column,
        compression=settings.bq_compression,
        max_streams=settings.bq_max_streams,
        slots=task_slots(settings),
        deadline_seconds=settings.bq_deadline_seconds,
        snapshot_time=settings.snapshot_time,
        usd_per_tib=settings.bq_usd_per_tib,
    )
    return open_source(settings.source, settings.storage_options.reveal(), options)


def url_of(dest: str, path: str, root: str) -> str:
    if "://" in dest and not dest.startswith("file://"):
        return dest.rstrip("/") + path[len(root.rstrip("/")) :]
    return path


def glue_catalog(settings: Settings) -> GlueCatalog | None:
    """The Glue Data Catalog the lake is registered in, or None without ``--glue-database``."""
    if settings.glue_database is None:
        return None
    return GlueCatalog(settings.glue_database, settings.glue_table_prefix)


def catalog_command(settings: Settings, date: dt.date) -> str:
    """The command that registers ``date`` in the settings' Glue catalog."""
    dest = shlex.quote(redact_url(settings.dest))
    command = (
        f"python -m processing catalog --date {date} --dest {dest} "
        f"--glue-database {settings.glue_database}"
    )
    if settings.glue_table_prefix:
        command += f" --glue-table-prefix {settings.glue_table_prefix}"
    return command


def register_in_catalog(
    settings: Settings,
    date: dt.date,
    manifest: Mapping[str, Any],
    *,
    done: str,
    catalog: GlueCatalog | None = None,
) -> tuple[TableRegistration, ...]:
    """Register ``manifest``, the published version of ``date``, in the settings' Glue catalog
    (nothing without ``--glue-database``). ``done``: what holds whatever happens here (``"the
    date is published"``), said first by a failure, which keeps its class (configuration or
    transient) and says how to register the date later."""
    catalog = catalog or glue_catalog(settings)
    if catalog is None:
        return ()
    try:
        return catalog.register(settings.dest, date, manifest)
    except PipelineError as e:
        raise type(e)(
            f"{done}; only its registration in the Glue Data Catalog failed: {e}. "
            f"`{catalog_command(settings, date)}` registers it"
        ) from e
