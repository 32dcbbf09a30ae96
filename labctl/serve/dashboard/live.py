"""The live state behind the dashboard: device presence, hosted runs' progress, running
criteria and down-sampled chart series, with a sequence number for catch-up.

The hub sees every durable edge result (``ControllerService.observers``) on the event loop;
per reading it only adds to a bucket mean, so it costs the ingest path little. Every bucket
remembers the sequence number of its last change: a browser that reconnects with
``Last-Event-ID`` gets only the buckets changed since, a new one gets everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from labctl.bus.edge import EdgeResult
from labctl.evaluators.result import EvaluationResult
from labctl.readings import DeviceRef
from labctl.rig.registry import DeviceView
from labctl.serve.dashboard.auth import Scope
from labctl.serve.service import ControllerService, HostedRun
from labctl.store.records import RunRecord

log = logging.getLogger(__name__)

POINTS_PER_SERIES = 400
"""Chart resolution: a run's device time is cut into about this many buckets."""
MAX_CHARTED_RUNS = 8
EVAL_MIN_INTERVAL_S = 2.0
DEVICES_CACHE_S = 0.2


@dataclass
class RunCharts:
    """Bucket means of the charted channels of one run's devices, in device time."""

    width: float
    channels: tuple[str, ...]
    series: dict[tuple[str, str], dict[int, list[float]]] = field(default_factory=dict)
    """(device key, channel) → bucket index → [sum, count, seq of last change]."""

    def add(self, device: str, ts: float, values: dict[str, float] | Any, seq: int) -> None:
        """Fold one reading into its buckets."""
        idx = int(ts // self.width)
        for ch in self.channels:
            v = values.get(ch)
            if v is None or not math.isfinite(v):
                continue
            b = self.series.setdefault((device, ch), {}).setdefault(idx, [0.0, 0.0, 0.0])
            b[0] += v
            b[1] += 1
            b[2] = seq
            buckets = self.series[(device, ch)]
            if len(buckets) > 2 * POINTS_PER_SERIES:
                for old in sorted(buckets)[: len(buckets) - 2 * POINTS_PER_SERIES]:
                    del buckets[old]

    def since(self, cursor: int, visible: set[str]) -> dict[str, dict[str, list[list[float]]]]:
        """Channel → device → [[bucket start, mean], …] changed after ``cursor``."""
        out: dict[str, dict[str, list[list[float]]]] = {}
        for (device, ch), buckets in self.series.items():
            if device not in visible:
                continue
            pts = [
                [i * self.width, round(b[0] / b[1], 3)]
                for i, b in sorted(buckets.items())
                if b[2] > cursor and b[1]
            ]
            if pts:
                out.setdefault(ch, {})[device] = pts
        return out


@dataclass
class _Eval:
    at: float = 0.0
    cost: float = 0.0
    result: EvaluationResult | None = None


def finished(hosted: HostedRun) -> RunRecord | None:
    """The final record of a hosted run, once its task returned one."""
    task = hosted.task
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


class LiveHub:
    """Shared by every dashboard connection of one controller."""

    def __init__(self, service: ControllerService) -> None:
        self.service = service
        self.seq = 1
        self._tick = asyncio.Event()
        self._charts: dict[str, RunCharts] = {}
        self._evals: dict[str, _Eval] = {}
        self._devices: tuple[float, int, list[DeviceView]] = (0.0, 0, [])
        """(monotonic time, ``seq`` it reflects, views) of the cached device list."""

    # -- input -----------------------------------------------------------------------------

    def on_result(self, result: EdgeResult) -> None:
        """A durable batch arrived: fold readings into charts, wake the connections."""
        self.seq += 1
        if result.presence or result.rejections:
            self._devices = (0.0, 0, [])
        last: DeviceRef | None = None
        charts: RunCharts | None = None
        for r in result.readings:
            if r.device is not last:
                last = r.device
                charts = self._charts_for(self.service.reservations.holder(r.device.key).run)
            if charts is not None:
                charts.add(r.device.key, r.ts, r.values, self.seq)
        self.notify()

    def notify(self) -> None:
        """Wake every waiting connection."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait(self, limit_s: float) -> None:
        """Until something changes or ``limit_s`` passes."""
        tick = self._tick
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tick.wait(), limit_s)

    def _charts_for(self, run_id: str) -> RunCharts | None:
        if not run_id:
            return None
        charts = self._charts.get(run_id)
        if charts is not None:
            return charts
        hosted = self.service.runs.get(run_id)
        if hosted is None:
            return None
        spec = hosted.runner.spec
        total = hosted.progress.device_total_s if hosted.progress else spec.duration or 0.0
        channels = dict.fromkeys([s.channel for s in spec.devices.values()] + spec.conditions)
        charts = RunCharts(max(60.0, total / POINTS_PER_SERIES), tuple(channels))
        self._charts[run_id] = charts
        for old in list(self._charts)[:-MAX_CHARTED_RUNS]:
            del self._charts[old]
            self._evals.pop(old, None)
        return charts

    # -- views -----------------------------------------------------------------------------

    def devices(self, scope: Scope) -> list[DeviceView]:
        """The devices this user may see (cached briefly: many connections, one query)."""
        at, _, views = self._devices
        if time.monotonic() - at > DEVICES_CACHE_S:
            views = self.service.devices()
            self._devices = (time.monotonic(), self.seq, views)
        return [d for d in views if scope.sees_vendor(d.vendor)]

    @property
    def devices_seq(self) -> int:
        """The ``seq`` the cached device list reflects (older than :attr:`seq` when a reading
        arrived after it was taken: its ``last_seen`` and counts are then behind)."""
        return self._devices[1]

    def run_devices(self, run_id: str) -> list[DeviceView]:
        """The devices a hosted run holds (or held, from its record once it ended)."""
        held = {k for k, h in self.service.reservations.held().items() if h.run == run_id}
        views = {d.key: d for d in self.devices(Scope(None))}
        hosted = self.service.runs.get(run_id)
        record = finished(hosted) if hosted is not None else None
        if record is not None:
            held |= {d.key for d in record.devices}
        return [views[k] for k in sorted(held) if k in views]

    def visible_run(self, run_id: str, scope: Scope) -> HostedRun | None:
        """A hosted run if this user may see it."""
        hosted = self.service.runs.get(run_id)
        if hosted is None:
            return None
        devs = [(d.vendor, d.role) for d in self.run_devices(run_id)]
        return hosted if scope.sees_devices(devs) else None

    def evaluation(self, run_id: str, hosted: HostedRun) -> EvaluationResult | None:
        """Final evaluation once done, else the running one, at most every few seconds."""
        if hosted.task.done():
            record = finished(hosted)
            return record.evaluation if record is not None else None
        e = self._evals.setdefault(run_id, _Eval())
        now = time.monotonic()
        if now - e.at >= max(EVAL_MIN_INTERVAL_S, 10 * e.cost):
            t0 = time.perf_counter()
            try:
                e.result = hosted.runner.current_evaluation()
            except Exception as exc:  # too little data yet: keep the last answer
                log.debug("no running evaluation of %s yet: %s", run_id, exc)
            e.at, e.cost = now, time.perf_counter() - t0
        return e.result

    def run_state(self, run_id: str, hosted: HostedRun, scope: Scope) -> dict[str, Any]:
        """Phase, progress, verdict, criteria and rejections of a hosted run."""
        p = hosted.progress
        done = hosted.task.done()
        record = finished(hosted)
        devices = self.run_devices(run_id)
        ev = self.evaluation(run_id, hosted)
        criteria = []
        if ev is not None:
            for s in ev.subjects:
                if not scope.sees_vendor(s.vendor):
                    continue
                for c in s.criteria:
                    criteria.append(
                        {
                            "subject": s.subject,
                            "metric": c.metric,
                            "value": c.value,
                            "target": c.target,
                            "passed": c.passed,
                        }
                    )
        rt = self.service.rt
        rejected = dict(rt.edge.counters.rejected) if rt is not None else {}
        return {
            "id": run_id,
            "trial": hosted.runner.spec.trial,
            "title": hosted.runner.spec.title,
            "phase": record.status if record else (p.phase if p else "starting"),
            "done": done,
            "status": record.status if record else "running",
            "message": record.message if record else "",
            "device_elapsed_s": p.device_elapsed_s if p else 0.0,
            "device_total_s": p.device_total_s if p else 0.0,
            "readings": p.readings if p else 0,
            "readings_per_s": round(p.readings_per_s, 1) if p else 0.0,
            "criteria": criteria,
            "final": bool(record and record.evaluation),
            "devices": [
                {"key": d.key, "role": d.role, "state": d.state, "rejected": d.rejected}
                for d in devices
                if scope.sees_vendor(d.vendor) or d.role == "reference"
            ],
            "rejected": rejected if scope.vendor is None else {},
        }

    def points(self, run_id: str, cursor: int, scope: Scope) -> dict[str, Any]:
        """Chart buckets of a run changed after ``cursor`` (all of them for cursor 0)."""
        charts = self._charts.get(run_id)
        if charts is None:
            return {}
        visible = {
            d.key
            for d in self.run_devices(run_id)
            if scope.sees_vendor(d.vendor) or d.role == "reference"
        }
        roles = {d.key: d.role for d in self.run_devices(run_id)}
        return {
            "width": charts.width,
            "roles": {k: roles.get(k, "") for k in visible},
            "series": charts.since(cursor, visible),
        }
