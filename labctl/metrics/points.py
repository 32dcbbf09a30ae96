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

import numpy as np
import orjson

from labctl.bus.edge import DetectionEvent, Rejection
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.lineprotocol import encode_line, encode_prefix, field_key, string_value
from labctl.readings import DeviceRef, Reading


def _check_finite(keys: tuple[str, ...], values: tuple[float, ...]) -> None:
    for k, v in zip(keys, values, strict=True):
        if not math.isfinite(v):
            raise ValueError(f"field {k!r} is {v}: line protocol has no NaN or infinity")


ReadingGroup = tuple[str, list[str], str, list[float], list[int], list[float]]
"""Consecutive readings of one stream sharing their field keys and session: the escaped tag
prefix, the escaped ``key=`` of each field, the escaped session value, the values (flat,
``len(keys)`` per reading), the sequence numbers and the device timestamps (seconds)."""

ReadingBlock = list[ReadingGroup]
"""Readings packed for formatting: strings and flat lists, cheap to build (list appends) and to
send to the spool process as arrays (:mod:`labctl.metrics.spool_wire`)."""


def new_group(prefix: str, keys: list[str], session: str) -> ReadingGroup:
    """An empty :data:`ReadingGroup`."""
    return (prefix, keys, session, [], [], [])


def format_block(block: ReadingBlock) -> bytes:
    """The line protocol of a :data:`ReadingBlock` (one line per reading), as bytes.

    Vectorised per group: orjson writes all the group's values at once (the same shortest
    round-trip digits as :func:`repr` and :func:`~labctl.metrics.lineprotocol.encode_line`),
    and one ``%`` format of the group's line template repeated ``n`` times lays them out —
    no Python call per reading. About twice as fast as an f-string per line, and this runs
    for every reading in the spool process.
    """
    out: list[bytes] = []
    for prefix, keys, sess, values, seqs, stamps in block:
        k, n = len(keys), len(seqs)
        if not n:
            continue
        # Tag values, keys and sessions may hold "%": doubled, they stay literal.
        fields = "".join(f"{_pct(key)}%b," for key in keys)
        line = f'{_pct(prefix)} {fields}seq=%di,session="{_pct(sess)}" %d\n'.encode()
        # ints and bools are written as floats (numpy converts them in C).
        written = orjson.dumps(
            np.asarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY
        )
        if b"null" in written:  # orjson's NaN and ±∞; pack() has already refused them
            raise ValueError("line protocol has no NaN or infinity")
        args: list[object] = [None] * (n * (k + 2))
        tokens = written[1:-1].split(b",") if k else []
        for j in range(k):
            args[j :: k + 2] = tokens[j::k]
        args[k :: k + 2] = seqs
        args[k + 1 :: k + 2] = [round(ts * 1e9) for ts in stamps]
        out.append((line * n) % tuple(args))
    return b"".join(out)


def _pct(text: str) -> str:
    return text.replace("%", "%%")


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
        """Line protocol for readings (one line each); byte-identical to :func:`encode_line`."""
        return format_block(self.pack(readings)).decode()

    def pack(self, readings: Iterable[Reading]) -> ReadingBlock:
        """Readings as a :data:`ReadingBlock`: what :func:`format_block` turns into lines.

        This is the ingest hot path in the controller; the formatting runs in the spool
        process. Field keys are channel names the manifest declared and sessions match
        ``[A-Za-z0-9_.:-]`` (both checked at the edge), so each key and session is checked and
        escaped once and cached; values must be finite (the edge rejects NaN/∞).
        """
        block: ReadingBlock = []
        last_dev: DeviceRef | None = None
        last_stream = ""
        last_session = ""
        prefix = ""
        last_keys: tuple[str, ...] | None = None
        values: list[float] = []
        seqs: list[int] = []
        stamps: list[float] = []
        sessions = self._sessions
        names: list[tuple[str, ...]] = []  # each group's channel names, for error messages
        for r in readings:
            vals = r.values
            keys = tuple(vals)
            # Readings of one message share their DeviceRef object, session and usually keys.
            if (
                r.device is not last_dev
                or r.stream != last_stream
                or keys != last_keys
                or r.session != last_session
            ):
                if r.device is not last_dev or r.stream != last_stream:
                    prefix = self._prefix(r.device, r.stream)
                    last_dev, last_stream = r.device, r.stream
                sess = sessions.get(r.session)
                if sess is None:
                    sess = self._session(r.session)
                last_keys, last_session = keys, r.session
                group = new_group(prefix, [self._key(k) for k in keys], sess)
                block.append(group)
                names.append(keys)
                values, seqs, stamps = group[3], group[4], group[5]
            values.extend(vals.values())
            seqs.append(r.seq)
            stamps.append(r.ts)
        for group_keys, (_, _, _, vs, _, _) in zip(names, block, strict=True):
            # One sum per group finds a NaN or ∞ (or a finite overflow, checked value by value).
            if not math.isfinite(sum(vs)):
                k = len(group_keys)
                for i in range(0, len(vs), k):
                    _check_finite(group_keys, tuple(vs[i : i + k]))
        return block

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
