"""Pseudonymised user ids and erasure on request, end to end on a local lake made by the real
CLI: no raw id anywhere in a lake written with a key; `forget` removes exactly the rows of the
users asked for (everywhere: events, rejected, the version kept for a rollback, failed runs'
staging) and leaves every other row as it was; a forget stopped before any storage step leaves
each date wholly before or wholly after, and the same forget again finishes it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from processing.app.forget import forget
from processing.logic.pseudonymise import key_id, pseudonym
from processing.spec.settings import Settings
from tests.conftest import run_cli, tree_digest
from tests.faults.storage_steps import after_its_lock_expired, killed_before, steps_of
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "data" / "sample_day.jsonl.gz"
DATE = "2023-10-23"
OTHER = "2023-10-24"  # generated: ids user_0000000..user_0000099
#: raw ids as the sample and the generator write them
RAW_ID = re.compile(rb"user_\d{7}|u{300}")
#: in the sample only (not in the generated day)
FORGOTTEN = [f"user_{i:07d}" for i in (150, 151, 160, 199)]
KEY = b"k" * 16 + bytes(range(16))


def _texts(path: Path) -> list[bytes]:
    """A file's content as a reader could see it: every value of a Parquet file as text, any
    other file as its bytes."""
    if path.suffix != ".parquet":
        return [path.read_bytes()]
    table = pq.ParquetFile(path).read()
    return [json.dumps(table.to_pylist(), default=str).encode()]


def _raw_ids_in(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            hits = {m.decode() for text in _texts(path) for m in RAW_ID.findall(text)}
            if hits:
                found[str(path.relative_to(root))] = sorted(hits)[:3]
    return found


def _run(cli, dest: Path, date: str, source: Path, *extra: str) -> None:
    done = cli(
        "run", "--date", date, "--source", source, "--dest", dest, *extra, "--no-performance-report"
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "user-id-key"
    path.write_bytes(KEY + b"\n")
    return path


def test_no_raw_user_id_anywhere_in_a_lake_written_with_a_key(cli, tmp_path, key_file) -> None:
    dest = tmp_path / "lake"
    for _ in range(2):  # the second run's publish keeps the first version in _previous/
        _run(cli, dest, DATE, SAMPLE, "--user-id-key-file", key_file)
    broken = tmp_path / "broken.jsonl"  # a failed run keeps its rejected rows in staging
    broken.write_text('{"timestamp": 1, "user_identifiers": {"id": "user_0000001"}}\n' * 3)
    failed = cli(
        "run", "--date", DATE, "--source", broken, "--dest", dest, "--user-id-key-file", key_file
    )
    assert failed.returncode == 3, failed.stderr
    assert list((dest / "_staging").rglob("*.parquet")), "the failed run kept nothing to scan"
    assert list((dest / "_previous").rglob("*.parquet"))

    assert _raw_ids_in(dest) == {}
    assert RAW_ID.search(SAMPLE.read_bytes()) is None  # (gzip: the scan's own check below)
    manifest = json.loads((dest / f"events/event_date={DATE}/_manifest.json").read_text())
    assert manifest["user_id"] == {
        "pseudonymised": True,
        "method": "hmac-sha256-128",
        "key_id": key_id(KEY),
    }
    events = pq.read_table(dest / "events", columns=["user_id"]).column("user_id").to_pylist()
    assert {len(x) for x in events} == {32}
    assert pseudonym("user_0000023", KEY) in events
    rejected = pq.read_table(dest / "rejected").column("source_record").to_pylist()
    records = [orjson.loads(r) for r in rejected]
    assert any("_withheld" in r for r in records)  # lines that are not JSON objects
    ids = [
        r["user_identifiers"]["id"] for r in records if isinstance(r.get("user_identifiers"), dict)
    ]
    assert pseudonym("u" * 300, KEY) in ids  # rejected for its length, then pseudonymised
    assert pseudonym("12345", KEY) in ids  # a number: its JSON text


def test_a_lake_without_a_key_holds_the_raw_ids(cli, tmp_path) -> None:
    """The scan above can fail: without a key the same scan finds the ids."""
    dest = tmp_path / "lake"
    _run(cli, dest, DATE, SAMPLE)
    found = _raw_ids_in(dest)
    assert any(p.startswith("events/") for p in found)
    assert any(p.startswith("rejected/") for p in found)
    manifest = json.loads((dest / f"events/event_date={DATE}/_manifest.json").read_text())
    assert manifest["user_id"] == {"pseudonymised": False}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the key"),
        (b"", "is empty"),
        (b"short key\n", "holds 9 bytes: a key has at least 32"),
    ],
)
def test_a_bad_key_file_is_refused_before_any_work(cli, tmp_path, content, message) -> None:
    key = tmp_path / "key"
    if content is not None:
        key.write_bytes(content)
    dest = tmp_path / "lake"
    done = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--user-id-key-file", key)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not dest.exists()
    assert "--user-id-key " not in cli("run", "--help").stdout  # never the key as a value


# --- forget ------------------------------------------------------------------------------------
def _published_files(root: Path, date: str) -> list[tuple[str, Path]]:
    """The published version's data files, as its manifest (the switch) lists them: what a
    reader through the manifest sees (a listing can also show the other version's files
    during a publish)."""
    manifest = json.loads((root / f"events/event_date={date}/_manifest.json").read_text())
    found = []
    for entry in manifest["files"]:
        path = root / entry["dataset"] / f"event_date={date}" / entry["path"]
        part = path.parent.name if entry["dataset"] == "events" else "rejected"
        found.append((part, path))
    return found


def _fingerprints(root: Path, date: str, dropping: set[str] | None = None) -> dict[str, Counter]:
    """Each published row of the date (events by event name, rejected) as a hash of its values;
    without the rows of ``dropping`` (ids in published form) if given."""
    found: dict[str, Counter[str]] = {}
    for part, path in _published_files(root, date):
        rows = pq.ParquetFile(path).read().to_pylist()
        found.setdefault(part, Counter()).update(
            hashlib.sha256(json.dumps(r, default=str, sort_keys=True).encode()).hexdigest()
            for r in rows
            if not dropping or not _belongs(r, dropping)
        )
    return {k: v for k, v in found.items() if v}


def _belongs(row: dict, published: set[str]) -> bool:
    if "user_id" in row:
        return row["user_id"] in published
    try:
        record = orjson.loads(row["source_record"])
    except orjson.JSONDecodeError:
        return any(f'"{i}"' in row["source_record"] for i in published)
    ids = record.get("user_identifiers") if isinstance(record, dict) else None
    return isinstance(ids, dict) and str(ids.get("id")).strip() in published


def _expected_after(root: Path, date: str, published: set[str]) -> dict[str, Counter[str]]:
    return _fingerprints(root, date, dropping=published)


@pytest.fixture(scope="module")
def lake(cli_module, tmp_path_factory, key_file) -> Path:
    """The sample day published twice with raw ids (a version kept for a rollback), and a
    generated day pseudonymised under the key: the forget request's users are in the first."""
    root = tmp_path_factory.mktemp("lake")
    dest = root / "lake"
    _run(cli_module, dest, DATE, SAMPLE)
    _run(cli_module, dest, DATE, SAMPLE)
    other = root / "other.jsonl"
    done = cli_module(
        "generate", "--date", OTHER, "--rows", 2000, "--bad-fraction", 0.05, "--out", other
    )
    assert done.returncode == 0, done.stderr
    _run(cli_module, dest, OTHER, other, "--user-id-key-file", key_file)
    return dest


@pytest.fixture(scope="module")
def cli_module():
    return run_cli  # the `cli` fixture's runner, for module-wide fixtures


def _ids_file(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "forget.txt"
    path.write_text("".join(f"  {i}\n" for i in ids) + "\n")
    return path


def test_forget_removes_those_users_rows_and_nothing_else(cli, lake, tmp_path, key_file) -> None:
    dest = tmp_path / "lake"
    shutil.copytree(lake, dest)
    before = _fingerprints(dest, DATE)
    expected = _expected_after(dest, DATE, set(FORGOTTEN))
    assert expected != before  # the request's users are in the sample
    other_before = tree_digest(dest / "events" / f"event_date={OTHER}")
    ids = _ids_file(tmp_path, FORGOTTEN)

    done = cli("forget", "--dest", dest, "--user-ids", ids, "--user-id-key-file", key_file)
    assert done.returncode == 0, done.stderr
    assert f"{DATE}: removed" in done.stdout and f"{OTHER}: no row of these users" in done.stdout

    assert _fingerprints(dest, DATE) == expected  # every other row as it was
    assert tree_digest(dest / "events" / f"event_date={OTHER}") == other_before  # not rewritten
    assert not (dest / "_previous" / f"event_date={DATE}").exists()  # it held their rows
    assert (dest / "_previous" / f"event_date={OTHER}").exists() is False
    scanned = {
        m.decode()
        for p in dest.rglob("*")
        if p.is_file()
        for t in _texts(p)
        for m in RAW_ID.findall(t)
    }
    assert not scanned & set(FORGOTTEN)
    manifest = json.loads((dest / f"events/event_date={DATE}/_manifest.json").read_text())
    erased = manifest["erased"]
    assert manifest["rows_read"] == (
        manifest["rows_valid"]
        + manifest["rows_rejected"]
        + erased["rows_valid"]
        + erased["rows_rejected"]
    )
    assert sum(manifest["valid_by_event"].values()) == manifest["rows_valid"]
    assert sum(manifest["rejected_by_reason"].values()) == manifest["rows_rejected"]
    logs = list((dest / "_erasures").rglob("*.json"))
    assert len(logs) == 1 and not RAW_ID.search(logs[0].read_bytes())
    assert cli("verify", "--dest", dest, "--all").returncode == 0

    again = cli("forget", "--dest", dest, "--user-ids", ids, "--user-id-key-file", key_file)
    assert again.returncode == 0, again.stderr
    assert f"{DATE}: no row of these users" in again.stdout


def test_forget_finds_pseudonymised_users_with_the_key(cli, lake, tmp_path, key_file) -> None:
    dest = tmp_path / "lake"
    shutil.copytree(lake, dest)
    wanted = ["user_0000001", "user_0000002"]  # in both days
    hashed = {pseudonym(i, KEY) for i in wanted}
    expected = _expected_after(dest, OTHER, hashed)
    assert expected != _fingerprints(dest, OTHER)
    ids = _ids_file(tmp_path, wanted)

    without = cli("forget", "--dest", dest, "--user-ids", ids)
    assert without.returncode == 2 and "no key was given" in without.stderr
    assert _fingerprints(dest, OTHER) != expected  # refused before anything was rewritten

    done = cli(
        "forget",
        "--dest",
        dest,
        "--user-ids",
        ids,
        "--user-id-key-file",
        key_file,
        "--from",
        OTHER,
        "--to",
        OTHER,
    )
    assert done.returncode == 0, done.stderr
    assert _fingerprints(dest, OTHER) == expected
    assert DATE not in done.stdout  # out of the range


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\n\n", "holds no user id"),
        (b"user_0000150\n" + b"x" * 300 + b"\n", "line 2: longer than 256"),
        (b"\xff\xfe\n", "not UTF-8"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_rewritten(
    cli, lake, tmp_path, content, message
) -> None:
    request = tmp_path / "forget.txt"
    request.write_bytes(content)
    before = tree_digest(lake)
    done = cli("forget", "--dest", lake, "--user-ids", request)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert tree_digest(lake) == before


def test_a_forget_stopped_before_any_step_leaves_each_date_before_or_after(
    lake, tmp_path, key_file
) -> None:
    """The crash injection of the publish's tests: a forget dies before its k-th storage step,
    for every k; each date is then wholly before or wholly after, and the same forget again
    finishes: no row of the users anywhere, nothing else changed, every date verified."""
    settings = Settings.load({}, required=(), dest="", user_id_key_file=str(key_file))
    ids = _ids_file(tmp_path, [*FORGOTTEN, "user_0000003"])  # in both days
    wanted = {
        **{d: set([*FORGOTTEN, "user_0000003"]) for d in (DATE,)},
        OTHER: {pseudonym(i, KEY) for i in [*FORGOTTEN, "user_0000003"]},
    }
    base = tmp_path / "base"
    shutil.copytree(lake, base)
    before = {d: _fingerprints(base, d) for d in (DATE, OTHER)}
    after = {d: _expected_after(base, d, wanted[d]) for d in (DATE, OTHER)}
    counted = tmp_path / "counted"
    shutil.copytree(base, counted)
    steps = steps_of(lambda: forget(settings.replace(dest=str(counted)), str(ids)))
    assert len(steps) > 10

    for k in range(len(steps)):
        dest = tmp_path / f"crash-{k}"
        shutil.copytree(base, dest)
        at = settings.replace(dest=str(dest))
        killed_before(k, lambda at=at: forget(at, str(ids)))
        for date in (DATE, OTHER):
            seen = _fingerprints(dest, date)
            assert seen in (before[date], after[date]), f"crash before step {k} ({steps[k]})"
        after_its_lock_expired(lambda at=at: forget(at, str(ids)))
        for date in (DATE, OTHER):  # the erasure log has each date, whenever the first died
            logged = list((dest / "_erasures").rglob(f"event_date={date}.json"))
            assert logged and json.loads(logged[0].read_text())["rows_valid"] > 0, k
        for date in (DATE, OTHER):
            assert _fingerprints(dest, date) == after[date], f"resumed after step {k}"
            assert not (dest / "_previous" / f"event_date={date}").exists()
        shutil.rmtree(dest)


def test_forget_reaches_staging_strays_and_refuses_a_damaged_date(
    cli, lake, tmp_path, key_file
) -> None:
    """Rows of the request outside a published version: in a failed run's staging of a date
    never published, in a file no version lists (a stopped publish's), in a date whose
    manifest is gone. The first two go; the damaged date is named and the exit code says so."""
    dest = tmp_path / "lake"
    shutil.copytree(lake, dest)
    theirs = next(
        path
        for _, path in _published_files(dest, DATE)
        if any(_belongs(r, set(FORGOTTEN)) for r in pq.ParquetFile(path).read().to_pylist())
    )
    staged = dest / "_staging/event_date=2023-10-25/run_id=dead/events/event_name=view"
    staged.mkdir(parents=True)
    shutil.copy(theirs, staged / "part-00000-000-0badc0de.parquet")
    stray = dest / f"events/event_date={OTHER}/event_name=view/part-00009-000-0badc0de.parquet"
    shutil.copy(theirs, stray)
    damaged = dest / "events/event_date=2023-10-26/event_name=view"
    damaged.mkdir(parents=True)
    shutil.copy(theirs, damaged / "part-00000-000-0badc0de.parquet")

    request = _ids_file(tmp_path, FORGOTTEN)
    done = cli("forget", "--dest", dest, "--user-ids", request, "--user-id-key-file", key_file)
    assert done.returncode == 4, done.stdout + done.stderr
    assert not (dest / "_staging/event_date=2023-10-25").exists()
    assert not stray.exists()
    assert f"{OTHER}: no row of these users" in done.stdout
    assert "1 files no version listed were deleted" in done.stdout
    assert "2023-10-26: skipped, damaged (no readable manifest)" in done.stdout
    assert f"{DATE}: removed" in done.stdout  # the others were served
