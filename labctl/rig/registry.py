"""The device registry: what the long-running controller knows of every device, in SQLite.

It is a durable mirror of the in-memory :class:`DeviceDirectory` (manifests, presence,
rejections), so ``labctl devices`` answers even while the controller is down, and a restarted
controller remembers quarantines and error history.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from labctl.rig.directory import DeviceRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    key TEXT PRIMARY KEY,
    vendor TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    firmware TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    session TEXT,
    last_seen REAL NOT NULL,
    channels TEXT NOT NULL DEFAULT '',
    rejected INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0,
    quarantined TEXT,
    manifest TEXT,
    last_errors TEXT NOT NULL DEFAULT '[]'
);
"""


class DeviceView(BaseModel):
    """One row of ``labctl devices``; also what the HTTP API returns."""

    model_config = ConfigDict(frozen=True)

    key: str
    vendor: str
    device: str
    model: str
    firmware: str
    state: str
    session: str | None
    last_seen: float
    channels: list[str]
    rejected: int
    readings: int
    quarantined: str | None
    manifest: dict[str, object] | None = None
    last_errors: list[str] = []
    role: str = ""
    reserved_by: str | None = None


def view_of(rec: DeviceRecord, role: str = "", reserved_by: str | None = None) -> DeviceView:
    """The view of an in-memory device record."""
    m = rec.manifest
    return DeviceView(
        key=rec.ref.key,
        vendor=rec.ref.vendor,
        device=rec.ref.device,
        model=m.device.model if m else "",
        firmware=m.device.sw_version if m else "",
        state="quarantined" if rec.quarantined else rec.state,
        session=rec.session,
        last_seen=rec.last_seen,
        channels=[c.name for c in m.channels] if m else [],
        rejected=rec.rejected,
        readings=rec.readings,
        quarantined=rec.quarantined,
        manifest=m.model_dump(mode="json", by_alias=True) if m else None,
        last_errors=list(rec.last_errors),
        role=role,
        reserved_by=reserved_by,
    )


class DeviceRegistry:
    """Devices in ``registry.sqlite3`` of a data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db

    def save(self, views: list[DeviceView]) -> None:
        """Insert or replace device rows."""
        rows = [
            (
                v.key,
                v.vendor,
                v.device,
                v.model,
                v.firmware,
                v.state,
                v.session,
                v.last_seen,
                ",".join(v.channels),
                v.rejected,
                v.readings,
                v.quarantined,
                json.dumps(v.manifest) if v.manifest else None,
                json.dumps(v.last_errors),
            )
            for v in views
        ]
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )

    def forget(self, key: str) -> bool:
        """Delete a device; False when it was not there."""
        with self._db() as db:
            return db.execute("DELETE FROM devices WHERE key = ?", (key,)).rowcount > 0

    def all(self) -> list[DeviceView]:
        """Every device, sorted by key."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM devices ORDER BY key").fetchall()
        return [_view(r) for r in rows]

    def get(self, key: str) -> DeviceView | None:
        """One device."""
        with self._db() as db:
            row = db.execute("SELECT * FROM devices WHERE key = ?", (key,)).fetchone()
        return _view(row) if row else None


def _view(r: Any) -> DeviceView:
    """A row (an untyped SQLite tuple) back into a view; pydantic checks the types."""
    names = (
        "key",
        "vendor",
        "device",
        "model",
        "firmware",
        "state",
        "session",
        "last_seen",
        "channels",
        "rejected",
        "readings",
        "quarantined",
        "manifest",
        "last_errors",
    )
    d = dict(zip(names, r, strict=True))
    d["channels"] = [c for c in d["channels"].split(",") if c]
    d["manifest"] = json.loads(d["manifest"]) if d["manifest"] else None
    d["last_errors"] = json.loads(d["last_errors"])
    return DeviceView.model_validate(d)
