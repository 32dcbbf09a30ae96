"""Telemetry checks: pure functions over what a device sent during the observation window."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.protocol.payloads import Manifest
from labctl.readings import Reading

RATE_TOLERANCE = 0.5
"""A channel's measured rate may differ from the declared ``rate_hz`` by this fraction."""
CLOCK_TOLERANCE_S = 2.0


@dataclass(frozen=True, slots=True)
class Message:
    """One telemetry message as the check saw it."""

    at: float
    """Arrival, epoch seconds (lab clock)."""
    readings: tuple[Reading, ...]
    duplicates: int
    rejection: str | None
    """``reason: detail`` when the edge refused the message."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A check's verdict in words."""

    ok: bool
    detail: str


def _live(messages: Sequence[Message], session: str) -> list[Reading]:
    return [r for m in messages for r in m.readings if r.session == session]


def check_channels(manifest: Manifest, messages: Sequence[Message], window_s: float) -> Finding:
    """Every declared channel arrives, and nothing the manifest does not declare."""
    rejected = [m.rejection for m in messages if m.rejection]
    channel_errors = [r for r in rejected if r.startswith("channel:")]
    if channel_errors:
        return Finding(
            False,
            f"the lab refused {len(channel_errors)} message(s): "
            f"{channel_errors[0].removeprefix('channel: ')}",
        )
    seen = {name for m in messages for r in m.readings for name in r.values}
    declared = [c.name for c in manifest.channels]
    missing = [n for n in declared if n not in seen]
    if missing:
        extra = f"; {len(rejected)} message(s) refused, first: {rejected[0]}" if rejected else ""
        return Finding(
            False,
            f"no sample of {', '.join(missing)} in {window_s:g} s although the manifest "
            f"declares {'it' if len(missing) == 1 else 'them'}{extra}",
        )
    n = sum(len(m.readings) for m in messages)
    streams = sorted({r.stream for m in messages for r in m.readings})
    return Finding(
        True,
        f"{n} samples in {window_s:g} s on telemetry/{','.join(streams)}: {', '.join(declared)}",
    )


def check_types(manifest: Manifest, messages: Sequence[Message]) -> Finding:
    """``int`` channels carry whole numbers, ``bool`` channels 0 or 1."""
    kinds = {c.name: c.type for c in manifest.channels}
    for m in messages:
        for r in m.readings:
            for name, value in r.values.items():
                kind = kinds.get(name)
                if kind == "int" and not float(value).is_integer():
                    return Finding(False, f"{name} is declared int but seq {r.seq} has {value!r}")
                if kind == "bool" and value not in (0, 1):
                    return Finding(
                        False,
                        f"{name} is declared bool but seq {r.seq} has {value!r}; "
                        "send 0 or 1 (JSON true/false are not numbers)",
                    )
    used = sorted({c.type for c in manifest.channels})
    return Finding(True, f"every value fits its declared type ({', '.join(used)})")


def measured_rate(readings: Sequence[Reading]) -> float | None:
    """Samples per second from the device timestamps (arrival times if those are all equal)."""
    if len(readings) < 2:
        return None
    stamps = sorted(r.ts for r in readings)
    span = stamps[-1] - stamps[0]
    if span <= 0:
        arrivals = sorted(r.received_ns / 1e9 for r in readings)
        span = arrivals[-1] - arrivals[0]
    return (len(readings) - 1) / span if span > 0 else None


def check_rates(manifest: Manifest, messages: Sequence[Message], session: str) -> Finding:
    """Each channel's measured rate is within :data:`RATE_TOLERANCE` of its ``rate_hz``."""
    readings = _live(messages, session)
    parts, bad = [], []
    for c in manifest.channels:
        rate = measured_rate([r for r in readings if c.name in r.values])
        if rate is None:
            bad.append(f"{c.name}: too few samples to measure (declared {c.rate_hz:g} Hz)")
            continue
        text = f"{c.name} {rate:.3g} Hz (declared {c.rate_hz:g})"
        if abs(rate - c.rate_hz) > RATE_TOLERANCE * c.rate_hz:
            bad.append(text)
        else:
            parts.append(text)
    if bad:
        return Finding(False, "rate off by more than 50 %: " + "; ".join(bad))
    return Finding(True, "; ".join(parts))


def check_seq(messages: Sequence[Message], session: str) -> Finding:
    """Within a session every sample has its own seq, and none is missing."""
    dupes = sum(m.duplicates for m in messages)
    seqs = sorted(r.seq for r in _live(messages, session))
    if dupes:
        return Finding(
            False,
            f"{dupes} sample(s) reused a (session, seq) already sent; the lab drops them as "
            "duplicates — give every sample the next seq",
        )
    if not seqs:
        others = sorted({r.session for m in messages for r in m.readings})
        if others:
            return Finding(
                False,
                f"samples carry session {', '.join(others)}, but the device's session is "
                f"{session}: a sample carries the session it was taken in",
            )
        return Finding(False, f"no sample of the current session {session} to check")
    missing = seqs[-1] - seqs[0] + 1 - len(seqs)
    if missing:
        return Finding(
            False,
            f"{missing} seq number(s) missing between {seqs[0]} and {seqs[-1]}: the lab counts "
            "them as lost samples (seq must go up by exactly 1 per sample)",
        )
    return Finding(True, f"seq {seqs[0]}…{seqs[-1]} of session {session}, none repeated or missing")


def check_clock(messages: Sequence[Message]) -> Finding:
    """The newest sample of each message is stamped close to its arrival."""
    skews = [m.at - max(r.ts for r in m.readings) for m in messages if m.readings]
    if not skews:
        return Finding(False, "no sample to compare with the lab clock")
    skew = statistics.median(skews)
    if abs(skew) > CLOCK_TOLERANCE_S:
        where = "behind" if skew > 0 else "ahead of"
        return Finding(
            False,
            f"sample timestamps are {abs(skew):.1f} s {where} the lab clock at arrival; "
            "synchronise the device clock (NTP) — command deadlines depend on it",
        )
    return Finding(True, f"median skew {skew * 1000:+.0f} ms")
