"""How the output is written: Parquet files, row groups, sizes (``processing.adapters.writer``,
``processing.adapters.merger``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option, parse_size

#: Bounds of the output files' target size: below a MiB a file holds less than a useful row group
#: (readers then pay a request per few rows); above 2 GiB one task's merge holds too much at once
#: and readers split files anyway.
MIN_TARGET_FILE_BYTES, MAX_TARGET_FILE_BYTES = 2**20, 2 * 2**30


@dataclass(frozen=True, kw_only=True)
class WriterSettings(Section):
    row_group_rows: int = field(
        default=1_048_576, metadata=option(int, "rows per Parquet row group (at most)")
    )
    max_file_rows: int = field(
        default=8_388_608, metadata=option(int, "rows per Parquet file before the next one")
    )
    max_buffered_rows: int = field(
        default=1_500_000, metadata=option(int, "rows buffered per task, across partitions")
    )
    target_file_size: str = field(
        default="256MiB",
        metadata=option(
            help="size of each output file (zstd, as written), whatever the number of pieces: "
            "the pieces' small files of a partition are merged up to it (1MiB to 2GiB)"
        ),
    )
    min_copied_row_group_rows: int = field(
        default=16_384,
        metadata=option(
            int,
            "merging small files copies their row groups as they are (no decoding) when none "
            "has fewer rows than this; else it rewrites them (0: always rewrite)",
        ),
    )
    zstd_level: int = field(default=1, metadata=option(int, "zstd compression level, 1-22"))

    @property
    def target_file_bytes(self) -> int:
        return parse_size("target_file_size", self.target_file_size)

    def _check(self) -> None:
        if self.row_group_rows < 1:
            raise bad("row_group_rows", "row_group_rows must be at least 1")
        if self.min_copied_row_group_rows < 0:
            raise bad("min_copied_row_group_rows", "min_copied_row_group_rows must be >= 0")
        if self.max_buffered_rows < 1:
            raise bad("max_buffered_rows", "max_buffered_rows must be at least 1")
        if self.max_file_rows < self.row_group_rows:
            raise bad("max_file_rows", "max_file_rows must be >= row_group_rows")
        if not 1 <= self.zstd_level <= 22:
            raise bad("zstd_level", "zstd_level must be between 1 and 22")
        target = parse_size("target_file_size", self.target_file_size)
        if not MIN_TARGET_FILE_BYTES <= target <= MAX_TARGET_FILE_BYTES:
            raise bad(
                "target_file_size",
                f"target_file_size {self.target_file_size!r} must be between 1MiB (about one "
                "row group) and 2GiB: 128MiB to 512MiB suits Athena, Trino and Spark",
            )
