"""The run store: SQLite, with a schema version, migrations and immutable final records.

A run is inserted as ``running`` when it starts and finalised exactly once; triggers refuse
any later change, so a record a department relies on cannot be edited in place. A run whose
process died while ``running`` is finalised as ``aborted`` the next time the store opens.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from labctl.store.records import FINAL_STATUSES, RunRecord, RunStatus

MIGRATIONS: tuple[str, ...] = (
    # 1: runs
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        trial TEXT NOT NULL,
        title TEXT NOT NULL,
        rig TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        spec_sha256 TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('running', 'passed', 'failed', 'aborted', 'faulted', 'error')),
        started_at REAL NOT NULL,
        ended_at REAL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        record TEXT
    );
    CREATE INDEX runs_trial ON runs (trial, started_at);
    CREATE TRIGGER runs_immutable BEFORE UPDATE ON runs
        WHEN OLD.status != 'running'
        BEGIN SELECT RAISE(ABORT, 'run records are immutable once final'); END;
    CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
        BEGIN SELECT RAISE(ABORT, 'run records are never deleted'); END;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The run store cannot do what was asked; the message says why."""


@dataclass(frozen=True)
class RunSummary:
    """One line of ``labctl runs list``."""

    id: str
    trial: str
    status: str
    started_at: float
    ended_at: float | None
    rig: str


class RunStore:
    """Runs in one data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            self._migrate(db)
            self._reap(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this labctl "
                f"understands ({SCHEMA_VERSION}); upgrade labctl"
            )
        for number in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            for statement in _split(MIGRATIONS[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")

    def _reap(self, db: sqlite3.Connection) -> None:
        """Finalise runs whose process on this host is gone."""
        host = socket.gethostname()
        rows = db.execute(
            "SELECT id, pid, record FROM runs WHERE status = 'running' AND host = ?", (host,)
        ).fetchall()
        for run_id, pid, record in rows:
            if _alive(pid):
                continue
            ended = time.time()
            if record:
                rec = json.loads(record)
                rec.update(
                    status="aborted",
                    exit_code=130,
                    ended_at=ended,
                    message="the controller process ended without finishing the run",
                )
                record = json.dumps(rec)
            db.execute(
                "UPDATE runs SET status = 'aborted', ended_at = ?, record = ? WHERE id = ?",
                (ended, record, run_id),
            )

    def start(self, record: RunRecord) -> None:
        """Insert a run as ``running``."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, trial, title, rig, spec_path, spec_sha256, status, "
                "started_at, host, pid, record) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (
                    record.id,
                    record.trial,
                    record.title,
                    record.rig,
                    record.spec.path,
                    record.spec.sha256,
                    record.started_at,
                    socket.gethostname(),
                    os.getpid(),
                    record.model_dump_json(),
                ),
            )

    def finish(self, record: RunRecord) -> None:
        """Write the final record; a second call for the same run is refused."""
        if record.status not in FINAL_STATUSES:
            raise StoreError(f"cannot finish run {record.id} with status {record.status!r}")
        with self._connect() as db:
            try:
                cur = db.execute(
                    "UPDATE runs SET status = ?, ended_at = ?, record = ? WHERE id = ?",
                    (record.status, record.ended_at, record.model_dump_json(), record.id),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"run {record.id} is already final: {exc}") from exc
            if cur.rowcount != 1:
                raise StoreError(f"no run {record.id} to finish")

    def get(self, run_id: str) -> RunRecord:
        """The record of ``run_id`` (a unique prefix is enough)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, record FROM runs WHERE id LIKE ? ORDER BY started_at DESC LIMIT 2",
                (run_id.replace("%", "") + "%",),
            ).fetchall()
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        if len(rows) > 1 and rows[0][0] != run_id:
            raise StoreError(f"{run_id!r} matches several runs; give more of the id")
        return RunRecord.model_validate_json(rows[0][1])

    def list(self, trial: str | None = None, limit: int = 50) -> list[RunSummary]:
        """The newest runs first."""
        q = "SELECT id, trial, status, started_at, ended_at, rig FROM runs"
        args: tuple[object, ...] = ()
        if trial:
            q += " WHERE trial = ?"
            args = (trial,)
        q += " ORDER BY started_at DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(q, (*args, limit)).fetchall()
        return [RunSummary(*r) for r in rows]

    def status(self, run_id: str) -> RunStatus:
        """The stored status of a run."""
        return self.get(run_id).status


def _split(script: str) -> list[str]:
    """Statements of a migration script (triggers contain ';' inside BEGIN … END)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
