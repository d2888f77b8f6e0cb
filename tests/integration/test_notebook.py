"""The notebooks: committed without outputs, and each runs end to end on a fresh lake.

``01_explore_events``: the slow test generates a day, publishes it with the CLI (subprocesses, as
a user would), then executes the notebook with nbclient against that lake.
``02_run_and_rerun``: executed on an empty lake; it plans, runs and reruns the sample day itself
(the BigQuery emulator and a LocalCluster in its kernel) and compares the two runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
import pytest

import processing

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS / "01_explore_events.ipynb"
RUN_AND_RERUN = NOTEBOOKS / "02_run_and_rerun.ipynb"
ROWS = 20_000


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m processing ARGS`` with the interpreter running the tests."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "processing", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"python -m processing {' '.join(args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def _output_text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in {"execute_result", "display_data"}:
        data = output.get("data", {})
        return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    return ""


@pytest.fixture
def python3_kernel(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A ``python3`` kernelspec that runs this interpreter (the venv's), whatever PATH says.

    The kernelspec goes in a temporary prefix put first on JUPYTER_PATH, so nothing outside the
    test's tmp directories is written.
    """
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install(prefix=str(prefix), kernel_name="python3")
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, spec.argv
    return "python3"


@pytest.mark.parametrize("notebook", [NOTEBOOK, RUN_AND_RERUN], ids=lambda p: p.stem)
def test_committed_notebook_is_valid_and_stripped(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {index} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
def test_notebook_runs_on_a_fresh_lake(
    tmp_path: Path, sample_date: dt.date, python3_kernel: str
) -> None:
    from nbclient import NotebookClient

    source = tmp_path / "day.jsonl.gz"
    lake = tmp_path / "lake"
    day = sample_date.isoformat()
    generate = ["--rows", str(ROWS), "--bad-fraction", "0.03", "--seed", "3"]
    _cli("generate", "--date", day, *generate, "--out", str(source), cwd=tmp_path)
    run = ["--source", str(source), "--dest", str(lake), "--workers", "1"]
    _cli("run", "--date", day, *run, cwd=tmp_path)
    manifest = processing.read_manifest(str(lake), sample_date)
    assert manifest is not None, "the run did not publish a manifest"
    rows_read = manifest["rows_read"]
    assert rows_read == ROWS
    assert manifest["rows_rejected"] > 0  # so the rejected-rows section has something to show

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in {"EVENTS_DATE", "EVENTS_LAKE"}}
    env.update(EVENTS_LAKE=str(lake), MPLBACKEND="Agg")
    client = NotebookClient(
        nb,
        kernel_name=python3_kernel,
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell

    outputs = [
        (index, output)
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    errors = [_output_text(o) for _, o in outputs if o.output_type == "error"]
    assert not errors, "\n\n".join(errors)
    assert not _warnings(o for _, o in outputs)
    unexecuted = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.execution_count is None
    ]
    assert not unexecuted, f"cells not executed: {unexecuted}"

    text = "\n".join(_output_text(o) for _, o in outputs)
    assert str(lake) in text, "the notebook did not read the lake from EVENTS_LAKE"
    assert f"{rows_read:,}" in text or str(rows_read) in text, (
        f"no output mentions rows_read={rows_read}"
    )
    assert "matches pyarrow: True" in text, "DuckDB and pyarrow disagree on the day's events"


def _warnings(outputs: Iterable[nbformat.NotebookNode]) -> list[str]:
    """What a reader would see as a warning under a cell."""
    return [
        o.text
        for o in outputs
        if o.output_type == "stream" and o.name == "stderr" and "Warning" in o.text
    ]


def test_the_notebooks_use_only_the_public_api() -> None:
    """``processing``'s own names (and the emulator, a tool of its own), never its internals,
    which move: what a reader copies from a notebook keeps working."""
    for path in (NOTEBOOK, RUN_AND_RERUN):
        code = "\n".join(
            c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
        )
        internal = re.findall(r"^\s*(?:from|import) (processing\.[\w.]+)", code, flags=re.M)
        assert all(m.startswith("processing.emulator") for m in internal), (path.name, internal)


def _execute(notebook: Path, kernel: str, env: dict[str, str]) -> tuple[nbformat.NotebookNode, str]:
    """Run every cell (raising on the first error); return the notebook and its output text."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("EVENTS_")}
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute(env={**keep, "MPLBACKEND": "Agg", **env})
    unexecuted = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None
    ]
    assert not unexecuted, f"cells not executed: {unexecuted}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [_output_text(o) for o in outputs if o.output_type == "error"]
    assert not errors, "\n\n".join(errors)
    assert not _warnings(outputs)
    return nb, "\n".join(_output_text(o) for o in outputs)


@pytest.mark.slow
def test_run_and_rerun_notebook_plans_runs_reruns_and_compares(
    tmp_path: Path, sample_date: dt.date, python3_kernel: str
) -> None:
    lake = tmp_path / "lake"
    _, text = _execute(
        RUN_AND_RERUN, python3_kernel, {"EVENTS_LAKE": str(lake), "EVENTS_DATE": str(sample_date)}
    )
    assert "Dask dashboard: http://127.0.0.1:" in text
    assert "projects/" in text and "sessions/" in text  # a real read session was planned
    for line in (
        "published is the rerun: True",
        "previous is the first run: True",
        "counts match: True",
        "no file name shared: True",
        "quality reports agree on the day: True",
    ):
        assert line in text, f"the notebook did not print {line!r}"
    published = processing.read_manifest(str(lake), sample_date)
    assert published is not None and published["run_id"] in text
    previous = lake / "_previous" / f"event_date={sample_date}" / "events"
    assert json.loads((previous / "_manifest.json").read_text())["run_id"] in text
    assert {e["kind"] for e in published["reports"]} == {
        "quality_json", "quality_html", "dask_performance"
    }  # fmt: skip
    assert "<iframe srcdoc=" in text  # the quality page, shown inline
