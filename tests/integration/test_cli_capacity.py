"""``python -m processing capacity``: the model for a day of any size, without a source or a
destination; bad input exits 2 with a line saying what to fix."""

from __future__ import annotations

import re

import pytest

from processing.app.cli import main
from processing.logic import capacity as cap


def _cost(stdout: str, name: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith(f"    {name} ")]
    return line.split()[len(name.split())]


def test_450_gib_from_the_command_line(cli) -> None:
    done = cli("capacity", "--bytes", "450GiB")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("capacity for 450.0 GiB in BigQuery (the fewest workers done within")
    expected = cap.size_for_deadline(cap.rows_for_bytes(450 * cap.GIB), 3600.0)
    assert f"  rows             {expected.rows:,}\n" in out
    assert f"  cost of the day  ${expected.total_usd:,.2f}\n" in out
    for label in ("streams", "workers", "worker memory", "wall time", "event files", "prices"):
        assert f"\n  {label} " in out
    assert "PROCESSING_EGRESS_USD_PER_GIB" in out
    assert done.stderr == ""


def test_given_workers_and_the_rest_of_the_model(capsys) -> None:
    args = ["--bytes", "500GiB", "--workers", "20", "--threads-per-worker", "4"]
    assert main(["capacity", *args, "--event-names", "10", "--target-file-size", "128MiB"]) == 0
    out = capsys.readouterr().out
    e = cap.estimate(
        cap.rows_for_bytes(500 * cap.GIB),
        workers=20,
        threads_per_worker=4,
        event_names=10,
        target_file_bytes=128 * cap.MIB,
    )
    assert "(--workers given)" in out
    assert "  workers          20 x 4 threads = 80 cores\n" in out
    assert f"  event files      {e.event_files:,} of about" in out
    assert "target 128.0 MiB, 10 event names" in out


def test_prices_come_from_flags_and_variables(capsys, monkeypatch) -> None:
    assert main(["capacity", "--bytes", "450GiB", "--workers", "10"]) == 0
    listed = _cost(capsys.readouterr().out, "egress")
    assert (
        main(["capacity", "--bytes", "450GiB", "--workers", "10", "--egress-usd-per-gib", "0"]) == 0
    )
    assert _cost(capsys.readouterr().out, "egress") == "$0.00" != listed
    monkeypatch.setenv("PROCESSING_BQ_USD_PER_TIB", "11")
    assert main(["capacity", "--bytes", "1TiB", "--workers", "10"]) == 0
    out = capsys.readouterr().out
    assert _cost(out, "BigQuery read") == "$11.00"
    assert "1.0 TiB at $11.00 per TiB" in out


def test_the_compression_setting_changes_what_goes_over_the_wire(capsys) -> None:
    assert main(["capacity", "--bytes", "450GiB", "--workers", "10"]) == 0
    lz4 = capsys.readouterr().out
    assert (
        main(["capacity", "--bytes", "450GiB", "--workers", "10", "--bq-compression", "ZSTD"]) == 0
    )
    zstd = capsys.readouterr().out
    assert "(LZ4_FRAME)" in lz4 and "(ZSTD)" in zstd
    money = re.compile(r"\$([\d,.]+)")
    lz4_egress, zstd_egress = (float(money.match(_cost(o, "egress"))[1]) for o in (lz4, zstd))  # type: ignore[index]
    assert zstd_egress < lz4_egress


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "the following arguments are required: --bytes", id="missing"),
        pytest.param(["--bytes", "0"], "'0' is not a size", id="zero"),
        pytest.param(["--bytes=-5GiB"], "'-5GiB' is not a size", id="negative"),
        pytest.param(["--bytes", "lots"], "'lots' is not a size: give a positive", id="garbage"),
        pytest.param(["--bytes", "1TiB", "--workers", "0"], "'0' is not a whole", id="workers"),
        pytest.param(
            ["--bytes", "1TiB", "--event-names", "x"], "'x' is not a whole", id="event-names"
        ),
        pytest.param(["--bytes", "1TiB", "--deadline", "soon"], "'soon' is not a dur", id="when"),
    ],
)
def test_bad_arguments_exit_2_saying_what_to_fix(capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["capacity", *args])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--egress-usd-per-gib", "-1"],
            "bad setting: egress_usd_per_gib must be a price >= 0",
            id="negative-price",
        ),
        pytest.param(
            ["--target-file-size", "10GiB"], "target_file_size '10GiB' must be", id="target"
        ),
        pytest.param(
            ["--deadline", "10s"],
            "--deadline: no cluster of up to 500 workers of 2 threads reads",
            id="deadline-too-short",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(capsys, args: list[str], message: str) -> None:
    assert main(["capacity", "--bytes", "450GiB", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") or message in err
    assert len(err.strip().splitlines()) == 1


def test_needs_no_source_or_destination(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PROCESSING_WORKERS", "1")  # the run's LocalCluster: not capacity's
    assert main(["capacity", "--bytes", "10GiB"]) == 0
    assert "the fewest workers done within --deadline 1h" in capsys.readouterr().out
