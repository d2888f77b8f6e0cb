"""Move a day of user-action events into a hive-partitioned, validated Parquet lake on Dask."""

from processing.spec.schema import SCHEMA_VERSION
from processing.spec.settings import Settings

__all__ = ["SCHEMA_VERSION", "Settings", "run"]


def run(settings: Settings):  # noqa: ANN201 - re-exported lazily to keep imports light
    from processing.app.pipeline import run as _run

    return _run(settings)
