"""The run store: schema version, immutable final records, crashed runs reaped."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.store.records import RunRecord, SpecRef
from labctl.store.runs import SCHEMA_VERSION, RunStore, StoreError


def record(run_id: str, status: str = "running", **over: object) -> RunRecord:
    base: dict[str, object] = dict(
        id=run_id,
        trial="t",
        title="T",
        kind="sensor-accuracy",
        rig="sim",
        spec=SpecRef(path="trials/t.yaml", sha256="0" * 64),
        status=status,
        exit_code=-1,
        started_at=1.0,
        ended_at=1.0,
        labctl_version="x",
        data_dir="/d",
    )
    base.update(over)
    return RunRecord.model_validate(base)


def test_schema_version_is_set(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite3")
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_final_records_are_immutable(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite3")
    store.start(record("r1"))
    store.finish(record("r1", "passed", exit_code=0, ended_at=2.0))
    assert store.get("r1").status == "passed"
    with pytest.raises(StoreError):
        store.finish(record("r1", "failed", exit_code=1))
    with sqlite3.connect(store.path) as db, pytest.raises(sqlite3.DatabaseError, match="immutable"):
        db.execute("UPDATE runs SET status = 'failed' WHERE id = 'r1'")
    with (
        sqlite3.connect(store.path) as db,
        pytest.raises(sqlite3.DatabaseError, match="never deleted"),
    ):
        db.execute("DELETE FROM runs")
    assert store.get("r1").status == "passed"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    RunStore(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        RunStore(path)


def test_run_of_a_dead_process_is_reaped_as_aborted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    code = (
        "import sys; sys.path[:0] = [" + repr(str(Path(__file__).parent)) + "];"
        "from pathlib import Path; from test_run_store import record;"
        "from labctl.store.runs import RunStore;"
        f"RunStore(Path({str(path)!r})).start(record('dead'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    rec = RunStore(path).get("dead")
    assert rec.status == "aborted" and "ended without finishing" in rec.message


def test_prefix_lookup_and_list(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite3")
    store.start(record("20260101-a", started_at=1.0))
    store.start(record("20260102-b", started_at=2.0))
    assert store.get("20260102").id == "20260102-b"
    with pytest.raises(StoreError, match="several"):
        store.get("2026")
    assert [r.id for r in store.list()] == ["20260102-b", "20260101-a"]
