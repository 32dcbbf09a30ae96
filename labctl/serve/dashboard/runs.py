"""Past runs for the runs page: verdicts, filtered by trial, vendor and date, within a scope."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from labctl.serve.dashboard.auth import Scope
from labctl.store.records import RunRecord
from labctl.store.runs import RunStore, StoreError

RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4,}$")
MAX_RUNS = 500


@dataclass(frozen=True)
class RunRow:
    """One line of the runs page."""

    id: str
    trial: str
    title: str
    status: str
    started: str
    vendors: list[str]
    candidates: list[tuple[str, bool]]
    has_report: bool


@dataclass(frozen=True)
class RunFilter:
    """What the officer typed into the filter form (empty: no filter)."""

    trial: str = ""
    vendor: str = ""
    date_from: str = ""
    date_to: str = ""
    """``YYYY-MM-DD`` (UTC), inclusive."""


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def visible(record: RunRecord, scope: Scope) -> bool:
    """True if ``scope`` may see this run (and open its report)."""
    return scope.sees_devices([(d.vendor, d.role) for d in record.devices])


def report_path(data_dir: Path, run_id: str) -> Path | None:
    """The run's HTML report, if the id is well-formed and the file exists."""
    if not RUN_ID.match(run_id):
        return None
    path = data_dir / "runs" / run_id / "report.html"
    return path if path.is_file() else None


def get_visible(store: RunStore, run_id: str, scope: Scope) -> RunRecord | None:
    """The record of ``run_id`` (exact id) if ``scope`` may see it."""
    if not RUN_ID.match(run_id):
        return None
    try:
        record = store.get(run_id)
    except StoreError:
        return None
    return record if record.id == run_id and visible(record, scope) else None


def rows(store: RunStore, data_dir: Path, scope: Scope, f: RunFilter) -> list[RunRow]:
    """Past runs, newest first, that ``scope`` may see and ``f`` selects."""
    out = []
    for summary in store.list(trial=f.trial or None, limit=MAX_RUNS):
        try:
            record = store.get(summary.id)
        except StoreError:
            continue
        if not visible(record, scope):
            continue
        vendors = sorted({d.vendor for d in record.devices if d.role != "reference"})
        day = _day(record.started_at)
        if f.vendor and f.vendor not in vendors:
            continue
        if (f.date_from and day < f.date_from) or (f.date_to and day > f.date_to):
            continue
        subjects = record.evaluation.subjects if record.evaluation else []
        out.append(
            RunRow(
                id=record.id,
                trial=record.trial,
                title=record.title,
                status=record.status,
                started=datetime.fromtimestamp(record.started_at, UTC).strftime(
                    "%Y-%m-%d %H:%M UTC"
                ),
                vendors=vendors,
                candidates=[(s.subject, s.passed) for s in subjects],
                has_report=report_path(data_dir, record.id) is not None,
            )
        )
    return out
