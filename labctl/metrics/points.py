"""What the lab records as points: readings, rejections, events and verdicts.

Measurements and their tags (low cardinality; values are fields):

* ``telemetry`` — tags run, trial, rig, vendor, device, role, stream; one field per channel,
  plus ``seq`` and ``session``; timestamp = device clock.
* ``rejected`` — tags run, rig, vendor, device, reason; fields ``count`` and ``detail``.
* ``event`` — tags run, trial, rig, kind (``phase``, ``presence``, ``run``); fields ``name``
  and ``detail``.
* ``verdict`` — tags run, trial, rig, vendor, device, role; one field per metric, one boolean
  ``pass_{criterion}`` per criterion and ``passed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from labctl.bus.edge import Rejection
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.lineprotocol import encode_line, encode_prefix
from labctl.readings import DeviceRef, Reading


@dataclass(frozen=True)
class RunTags:
    """Tags every point of a run carries."""

    run: str
    trial: str
    rig: str


@dataclass
class PointEncoder:
    """Formats points for one run; caches the tag prefix of each device stream."""

    tags: RunTags
    role_of: Callable[[DeviceRef], str]
    _prefixes: dict[tuple[DeviceRef, str], str] = field(default_factory=dict)
    _seq: int = 0

    def readings(self, readings: Iterable[Reading]) -> str:
        """Line protocol for readings (one line each)."""
        lines = []
        t = self.tags
        for r in readings:
            key = (r.device, r.stream)
            prefix = self._prefixes.get(key)
            if prefix is None:
                prefix = encode_prefix(
                    "telemetry",
                    {
                        "run": t.run,
                        "trial": t.trial,
                        "rig": t.rig,
                        "vendor": r.device.vendor,
                        "device": r.device.device,
                        "role": self.role_of(r.device),
                        "stream": r.stream,
                    },
                )
                self._prefixes[key] = prefix
            fields: dict[str, float | int | str] = dict(r.values)
            fields["seq"] = r.seq
            fields["session"] = r.session
            lines.append(encode_line(prefix, fields, round(r.ts * 1e9)))
        return "".join(lines)

    def rejections(self, rejections: Iterable[Rejection], now_ns: int) -> str:
        """Line protocol for rejected messages (unique timestamps so none overwrite)."""
        lines = []
        t = self.tags
        for rej in rejections:
            prefix = encode_prefix(
                "rejected",
                {
                    "run": t.run,
                    "rig": t.rig,
                    "vendor": rej.vendor or "",
                    "device": rej.device or "",
                    "reason": rej.reason,
                },
            )
            lines.append(
                encode_line(prefix, {"count": 1, "detail": rej.detail[:1000]}, self._unique(now_ns))
            )
        return "".join(lines)

    def event(self, kind: str, name: str, detail: str, now_ns: int) -> str:
        """Line protocol for one run event."""
        t = self.tags
        prefix = encode_prefix(
            "event", {"run": t.run, "trial": t.trial, "rig": t.rig, "kind": kind}
        )
        return encode_line(prefix, {"name": name, "detail": detail[:1000]}, self._unique(now_ns))

    def verdict(self, result: EvaluationResult, roles: dict[str, str], now_ns: int) -> str:
        """Line protocol for the evaluation: one point per subject."""
        t = self.tags
        lines = []
        for s in result.subjects:
            prefix = encode_prefix(
                "verdict",
                {
                    "run": t.run,
                    "trial": t.trial,
                    "rig": t.rig,
                    "vendor": s.vendor,
                    "device": s.device,
                    "role": roles.get(s.subject, "dut"),
                },
            )
            fields: dict[str, float | int | str | bool] = {"passed": s.passed}
            for m in s.metrics:
                if m.value is not None and math.isfinite(m.value):
                    fields[m.name] = float(m.value)
            for c in s.criteria:
                fields[f"pass_{c.metric}"] = c.passed
            lines.append(encode_line(prefix, fields, self._unique(now_ns)))
        return "".join(lines)

    def _unique(self, now_ns: int) -> int:
        # Points with equal series and timestamp overwrite each other in InfluxDB.
        self._seq += 1
        return now_ns + self._seq
