"""Where files go: ``processing.logic.layout`` as a table of cases."""

from __future__ import annotations

import datetime as dt

import pytest

from processing.logic import layout as lo
from processing.spec.errors import ConfigError

DATE = dt.date(2023, 10, 23)

PATHS = [
    # (root, method, args, expected)
    pytest.param(
        "/lake", "events_date", (DATE,), "/lake/events/event_date=2023-10-23", id="events-date"
    ),
    pytest.param(
        "/lake", "rejected_date", (DATE,), "/lake/rejected/event_date=2023-10-23", id="rejected"
    ),
    pytest.param(
        "/lake",
        "manifest",
        (DATE,),
        "/lake/events/event_date=2023-10-23/_manifest.json",
        id="manifest",
    ),
    pytest.param(
        "/lake", "staging_date", (DATE,), "/lake/_staging/event_date=2023-10-23", id="staging-date"
    ),
    pytest.param(
        "/lake",
        "staging_run",
        (DATE, "2023-10-23T01.abc_1"),
        "/lake/_staging/event_date=2023-10-23/run_id=2023-10-23T01.abc_1",
        id="staging-run",
    ),
    pytest.param(
        "/lake", "previous", (DATE,), "/lake/_previous/event_date=2023-10-23", id="previous"
    ),
    pytest.param(
        "bucket/lake/",
        "events_date",
        (DATE,),
        "bucket/lake/events/event_date=2023-10-23",
        id="trailing-slash-stripped",
    ),
    pytest.param(
        "s3://bucket/lake//",
        "events_date",
        (dt.date(2024, 2, 29),),
        "s3://bucket/lake/events/event_date=2024-02-29",
        id="url-root-leap-day",
    ),
    pytest.param(
        "relative/dir",
        "rejected_date",
        (dt.date(1999, 1, 2),),
        "relative/dir/rejected/event_date=1999-01-02",
        id="relative-root-zero-padded-date",
    ),
]


@pytest.mark.parametrize(("root", "method", "args", "expected"), PATHS)
def test_paths(root: str, method: str, args: tuple, expected: str) -> None:
    assert getattr(lo.Layout(root), method)(*args) == expected


def test_root_is_normalised() -> None:
    assert lo.Layout("/lake///").root == "/lake"
    assert lo.Layout("/").root == "/"


def test_staging_and_previous_are_hidden_from_readers() -> None:
    """Readers skip names starting with "_": staging, previous and manifests live under such."""
    layout = lo.Layout("/lake")
    for path in (layout.staging_date(DATE), layout.previous(DATE)):
        assert path.removeprefix("/lake/").startswith("_")
    assert layout.manifest(DATE).rsplit("/", 1)[-1].startswith("_")
    assert lo.MANIFEST.startswith("_")


TAG = "0a1b2c3d"
FILE_NAMES = [
    pytest.param(0, 0, "part-00000-000-0a1b2c3d.parquet", id="zero"),
    pytest.param(7, 12, "part-00007-012-0a1b2c3d.parquet", id="padded"),
    pytest.param(12345, 999, "part-12345-999-0a1b2c3d.parquet", id="full-width"),
    pytest.param(123456, 1000, "part-123456-1000-0a1b2c3d.parquet", id="wider-than-padding"),
]


@pytest.mark.parametrize(("piece", "sequence", "expected"), FILE_NAMES)
def test_file_name(piece: int, sequence: int, expected: str) -> None:
    assert lo.file_name(piece, sequence, TAG) == expected


def test_file_names_are_unique() -> None:
    names = {lo.file_name(p, q, TAG) for p in range(0, 2000, 7) for q in range(0, 1200, 13)}
    assert len(names) == len(range(0, 2000, 7)) * len(range(0, 1200, 13))


RELATIVE = [
    pytest.param("view", 0, 0, "event_name=view/part-00000-000-0a1b2c3d.parquet", id="view"),
    pytest.param(
        "add_to_cart", 3, 2, "event_name=add_to_cart/part-00003-002-0a1b2c3d.parquet", id="cart"
    ),
    pytest.param(
        "a" + "b" * 63, 1, 1, f"event_name=a{'b' * 63}/part-00001-001-0a1b2c3d.parquet", id="max"
    ),
]


@pytest.mark.parametrize(("event_name", "piece", "sequence", "expected"), RELATIVE)
def test_relative_event_file(event_name: str, piece: int, sequence: int, expected: str) -> None:
    assert f"{lo.partition_dir(event_name)}/{lo.file_name(piece, sequence, TAG)}" == expected
    events = lo.Layout("/lake").events_date(DATE)
    full = f"{events}/{lo.partition_dir(event_name)}/{lo.file_name(piece, sequence, TAG)}"
    assert full == f"{events}/{expected}"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("/lake/_staging/event_date=2023-10-23", DATE),
        ("bucket/lake/_locks/event_date=2023-10-23/", DATE),
        ("/lake/_staging/event_date=2023-13-01", None),
        ("/lake/_staging/other=2023-10-23", None),
        ("/lake/_staging/.write-probe", None),
    ],
)
def test_entry_date(entry: str, expected: dt.date | None) -> None:
    assert lo.entry_date(entry) == expected


def test_lock_is_hidden_from_readers_and_per_date() -> None:
    layout = lo.Layout("bucket/lake")
    assert layout.lock(DATE) == "bucket/lake/_locks/event_date=2023-10-23.json"
    assert layout.lock(DATE) != layout.lock(DATE + dt.timedelta(days=1))


def test_failure_marker_is_hidden_from_readers_and_per_date() -> None:
    layout = lo.Layout("bucket/lake")
    assert layout.failure_marker(DATE) == "bucket/lake/_alerts/event_date=2023-10-23.failed"
    assert layout.failure_marker(DATE) != layout.failure_marker(DATE + dt.timedelta(days=1))


UNSAFE_EVENT_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("../etc", id="dotdot"),
    pytest.param("view/../../etc", id="traversal"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a=b", id="equals"),
    pytest.param("View", id="upper"),
    pytest.param("add to cart", id="space"),
    pytest.param("add-to-cart", id="hyphen"),
    pytest.param("1view", id="digit-first"),
    pytest.param("_view", id="underscore-first"),
    pytest.param("café", id="non-ascii"),
    pytest.param("a" * 65, id="too-long"),
    pytest.param(".", id="dot"),
    pytest.param("view\x00", id="nul"),
    pytest.param("view\n", id="trailing-newline"),
]


@pytest.mark.parametrize("event_name", UNSAFE_EVENT_NAMES)
def test_unsafe_event_names_refused(event_name: str) -> None:
    with pytest.raises(ValueError, match="not a safe partition value"):
        lo.partition_dir(event_name)


GOOD_RUN_IDS = [
    pytest.param("r", id="one-char"),
    pytest.param("20231023T010203Z-abc123", id="generated-like"),
    pytest.param("manual.retry_2-A", id="dots-underscores"),
    pytest.param("a" * 80, id="max-length"),
]


@pytest.mark.parametrize("run_id", GOOD_RUN_IDS)
def test_good_run_ids(run_id: str) -> None:
    assert lo.check_run_id(run_id) == run_id
    assert lo.Layout("/l").staging_run(DATE, run_id).endswith(f"/run_id={run_id}")


BAD_RUN_IDS = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="traversal"),
    pytest.param("a/b", id="slash"),
    pytest.param("-r", id="hyphen-first"),
    pytest.param("_r", id="underscore-first"),
    pytest.param("a b", id="space"),
    pytest.param("a=b", id="equals"),
    pytest.param("a:b", id="colon"),
    pytest.param("a*", id="glob"),
    pytest.param("é", id="non-ascii"),
    pytest.param("a" * 81, id="too-long"),
    pytest.param("run1\n", id="trailing-newline"),
]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_bad_run_ids_refused(run_id: str) -> None:
    with pytest.raises(ConfigError, match="run id"):
        lo.check_run_id(run_id)
    with pytest.raises(ConfigError):
        lo.Layout("/lake").staging_run(DATE, run_id)
