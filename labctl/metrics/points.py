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
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from labctl.bus.edge import Rejection
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.lineprotocol import encode_line, encode_prefix
from labctl.readings import DeviceRef, Reading

_SAFE_SESSION = re.compile(r"^[A-Za-z0-9_.:-]*$")


@dataclass(frozen=True)
class RunTags:
    """The run a point belongs to (empty strings: no run — the rig was idle)."""

    run: str
    trial: str


@dataclass
class PointEncoder:
    """Formats points; caches the tag prefix of each device stream.

    ``run_of`` says which run a device belongs to right now (its reservation), so one
    controller can host several runs on one spool.
    """

    rig: str
    role_of: Callable[[DeviceRef], str]
    run_of: Callable[[DeviceRef], RunTags]
    _prefixes: dict[tuple[DeviceRef, str, RunTags], str] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)
    _seq: int = 0

    def readings(self, readings: Iterable[Reading]) -> str:
        """Line protocol for readings (one line each); byte-identical to :func:`encode_line`.

        This is the ingest hot path. Field keys are channel names the manifest declared and
        sessions match ``[A-Za-z0-9_.:-]`` (both checked at the edge), so each key is checked
        and escaped once and cached; values are finite floats (the edge rejects NaN/∞).
        """
        lines = []
        keys = self._keys
        last_dev: DeviceRef | None = None
        last_stream = ""
        prefix = ""
        for r in readings:
            # Readings of one message share their DeviceRef object: skip the lookups.
            if r.device is not last_dev or r.stream != last_stream:
                prefix = self._prefix(r.device, r.stream)
                last_dev, last_stream = r.device, r.stream
            parts = []
            for k, v in r.values.items():
                ek = keys.get(k)
                if ek is None:
                    ek = keys[k] = encode_line("m", {k: 0.0}, 0)[2:].split("=", 1)[0] + "="
                if not math.isfinite(v):
                    raise ValueError(f"field {k!r} is {v}: line protocol has no NaN or infinity")
                parts.append(ek + repr(float(v)))
            session = r.session
            if not _SAFE_SESSION.match(session):
                session = session.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(
                f'{prefix} {",".join(parts)},seq={r.seq}i,session="{session}" {round(r.ts * 1e9)}\n'
            )
        return "".join(lines)

    def _prefix(self, device: DeviceRef, stream: str) -> str:
        t = self.run_of(device)
        key = (device, stream, t)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) > 100_000:
                self._prefixes.clear()
            prefix = encode_prefix(
                "telemetry",
                {
                    "run": t.run,
                    "trial": t.trial,
                    "rig": self.rig,
                    "vendor": device.vendor,
                    "device": device.device,
                    "role": self.role_of(device),
                    "stream": stream,
                },
            )
            self._prefixes[key] = prefix
        return prefix

    def rejections(self, rejections: Iterable[Rejection], now_ns: int) -> str:
        """Line protocol for rejected messages (unique timestamps so none overwrite)."""
        lines = []
        for rej in rejections:
            t = (
                self.run_of(DeviceRef(rej.vendor, rej.device))
                if rej.vendor and rej.device
                else RunTags("", "")
            )
            prefix = encode_prefix(
                "rejected",
                {
                    "run": t.run,
                    "rig": self.rig,
                    "vendor": rej.vendor or "",
                    "device": rej.device or "",
                    "reason": rej.reason,
                },
            )
            lines.append(
                encode_line(prefix, {"count": 1, "detail": rej.detail[:1000]}, self._unique(now_ns))
            )
        return "".join(lines)

    def event(self, kind: str, name: str, detail: str, now_ns: int, tags: RunTags) -> str:
        """Line protocol for one event (phase change, presence, run)."""
        prefix = encode_prefix(
            "event", {"run": tags.run, "trial": tags.trial, "rig": self.rig, "kind": kind}
        )
        return encode_line(prefix, {"name": name, "detail": detail[:1000]}, self._unique(now_ns))

    def verdict(
        self, result: EvaluationResult, roles: dict[str, str], now_ns: int, tags: RunTags
    ) -> str:
        """Line protocol for the evaluation: one point per subject."""
        lines = []
        for s in result.subjects:
            prefix = encode_prefix(
                "verdict",
                {
                    "run": tags.run,
                    "trial": tags.trial,
                    "rig": self.rig,
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
