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

from labctl.bus.edge import DetectionEvent, Rejection
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.lineprotocol import encode_line, encode_prefix, field_key, string_value
from labctl.readings import DeviceRef, Reading

# Line formatters for 1–6 fields as compiled f-strings (about twice as fast as str.format,
# which re-parses its template on every call). Written out, not generated: no eval.
Fmt = Callable[[str, tuple[str, ...], tuple[float, ...], int, str, int], str]


def _line1(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return f'{p} {k[0]}{v[0]!r},seq={q}i,session="{s}" {t}\n'


def _line2(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return f'{p} {k[0]}{v[0]!r},{k[1]}{v[1]!r},seq={q}i,session="{s}" {t}\n'


def _line3(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return f'{p} {k[0]}{v[0]!r},{k[1]}{v[1]!r},{k[2]}{v[2]!r},seq={q}i,session="{s}" {t}\n'


def _line4(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return (
        f"{p} {k[0]}{v[0]!r},{k[1]}{v[1]!r},{k[2]}{v[2]!r},{k[3]}{v[3]!r},"
        f'seq={q}i,session="{s}" {t}\n'
    )


def _line5(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return (
        f"{p} {k[0]}{v[0]!r},{k[1]}{v[1]!r},{k[2]}{v[2]!r},{k[3]}{v[3]!r},{k[4]}{v[4]!r},"
        f'seq={q}i,session="{s}" {t}\n'
    )


def _line6(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    return (
        f"{p} {k[0]}{v[0]!r},{k[1]}{v[1]!r},{k[2]}{v[2]!r},{k[3]}{v[3]!r},{k[4]}{v[4]!r},"
        f'{k[5]}{v[5]!r},seq={q}i,session="{s}" {t}\n'
    )


def _line_any(p: str, k: tuple[str, ...], v: tuple[float, ...], q: int, s: str, t: int) -> str:
    fields = ",".join([a + repr(b) for a, b in zip(k, v, strict=True)])
    return f'{p} {fields},seq={q}i,session="{s}" {t}\n'


_LINES: dict[int, Fmt] = {1: _line1, 2: _line2, 3: _line3, 4: _line4, 5: _line5, 6: _line6}


def _check_finite(keys: tuple[str, ...], values: tuple[float, ...]) -> None:
    for k, v in zip(keys, values, strict=True):
        if not math.isfinite(v):
            raise ValueError(f"field {k!r} is {v}: line protocol has no NaN or infinity")


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
    _sessions: dict[str, str] = field(default_factory=dict)
    _seq: int = 0

    def readings(self, readings: Iterable[Reading]) -> str:
        """Line protocol for readings (one line each); byte-identical to :func:`encode_line`.

        This is the ingest hot path. Field keys are channel names the manifest declared and
        sessions match ``[A-Za-z0-9_.:-]`` (both checked at the edge), so each key is checked
        and escaped once and cached; values are finite floats (the edge rejects NaN/∞).
        """
        lines = []
        last_dev: DeviceRef | None = None
        last_stream = ""
        prefix = ""
        last_keys: tuple[str, ...] | None = None
        ekeys: tuple[str, ...] = ()
        line: Fmt = _line_any
        sessions = self._sessions
        for r in readings:
            # Readings of one message share their DeviceRef object and usually their keys.
            if r.device is not last_dev or r.stream != last_stream:
                prefix = self._prefix(r.device, r.stream)
                last_dev, last_stream, last_keys = r.device, r.stream, None
            vals = r.values
            keys = tuple(vals)
            if keys != last_keys:
                ekeys = tuple(self._key(k) for k in keys)
                line = _LINES.get(len(keys), _line_any)
                last_keys = keys
            v = tuple(map(float, vals.values()))
            if not math.isfinite(sum(v)):
                _check_finite(keys, v)
            sess = sessions.get(r.session)
            if sess is None:
                sess = self._session(r.session)
            lines.append(line(prefix, ekeys, v, r.seq, sess, round(r.ts * 1e9)))
        return "".join(lines)

    def _key(self, name: str) -> str:
        found = self._keys.get(name)
        if found is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            found = self._keys[name] = field_key(name) + "="
        return found

    def _session(self, session: str) -> str:
        escaped = string_value("session", session)
        if len(self._sessions) > 10_000:
            self._sessions.clear()
        self._sessions[session] = escaped
        return escaped

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

    def detections(self, events: Iterable[DetectionEvent]) -> str:
        """Line protocol for detection events: one point per message (object count, best
        score, frame id), stamped with the arrival time so late answers show as late."""
        lines = []
        for e in events:
            t = self.run_of(e.device)
            prefix = encode_prefix(
                "detections",
                {
                    "run": t.run,
                    "trial": t.trial,
                    "rig": self.rig,
                    "vendor": e.device.vendor,
                    "device": e.device.device,
                    "role": self.role_of(e.device),
                },
            )
            d = e.detections
            fields: dict[str, float | int | str | bool] = {
                "objects": len(d.objects),
                "frame": d.frame,
                "seq": d.seq,
                "device_ts": d.ts,
            }
            if d.objects:
                fields["max_score"] = max(o.score for o in d.objects)
            lines.append(encode_line(prefix, fields, self._unique(e.received_ns)))
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
