"""Per-window figures of the ``availability`` evaluator: a device's presence timeline and
what one measured window holds of its data. Every figure is a sum (seconds, counts) so that
windows add up, for the whole trial and for each condition bin."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.evaluators.windows import Window
from labctl.observations import PresenceObserved

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ONLINE, DOWN = "online", "down"


@dataclass(frozen=True)
class Presence:
    """A device's presence changes in device time: ``online`` or ``down`` (offline/lost),
    stale-session changes already left out (see :mod:`labctl.evaluators.availability`)."""

    times: list[float]
    states: list[str]
    sessions: list[str]
    stale: int
    """``offline``/``lost`` changes ignored because they named a replaced session."""

    @classmethod
    def from_observations(
        cls, observations: Sequence[PresenceObserved], clock: Callable[[float], float]
    ) -> Presence:
        """From presence observations in arrival order; ``clock`` maps arrival to device
        time. Times are kept non-decreasing (arrival order wins over a device clock that
        steps back)."""
        times: list[float] = []
        states: list[str] = []
        sessions: list[str] = []
        current: str | None = None
        stale = 0
        last = -math.inf
        for o in observations:
            if o.state == ONLINE:
                current, state = o.session, ONLINE
            elif o.state in ("offline", "lost"):
                if current is not None and o.session != current:
                    stale += 1
                    continue
                state = DOWN
            else:
                continue
            # A Last Will's payload was fixed at connect time: only its arrival is news.
            t = o.ts if o.ts is not None and o.state != "lost" else clock(o.at)
            last = max(last, t)
            times.append(last)
            states.append(state)
            sessions.append(o.session)
        return cls(times, states, sessions, stale)

    def before(self, t: float) -> tuple[str, str | None, bool]:
        """(state, last online session, assumed?) just before device time ``t``; before the
        first change the device is taken as online (``assumed`` True)."""
        i = bisect.bisect_left(self.times, t)
        if i == 0:
            return ONLINE, None, True
        session = next(
            (self.sessions[j] for j in range(i - 1, -1, -1) if self.states[j] == ONLINE), None
        )
        return self.states[i - 1], session, False


@dataclass(frozen=True)
class WindowStats:
    """One device in one window; all additive."""

    length: float
    online_s: float
    down_s: float
    failures: int
    outages: int
    received: int
    expected_seq: int
    expected_nominal: float | None
    reconnects: int
    latencies: FloatArray
    assumed_online: bool


def window_stats(
    w: Window,
    ts: FloatArray,
    received_at: FloatArray,
    session: IntArray,
    seq: IntArray,
    presence: Presence,
    interval_s: float | None,
    session_names: Sequence[str],
) -> WindowStats:
    """The figures of one device in window ``w``. Readings are given in arrival order (the
    first arrival of a duplicated ``(session, seq)`` is kept); ``session`` holds indexes into
    ``session_names``."""
    inside = (ts >= w.start_ts) & (ts < w.end_ts)
    t, r, s, q = ts[inside], received_at[inside], session[inside], seq[inside]
    order = np.lexsort((q, s))  # stable: among duplicates the first arrival comes first
    ss, sq = s[order], q[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (ss[1:] != ss[:-1]) | (sq[1:] != sq[:-1])
    keep = order[first]
    us, uq = ss[first], sq[first]
    # Per session (sorted by session, then seq): expected = last − first + 1.
    starts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]]) if us.size else np.empty(0, int)
    ends = np.r_[starts[1:], us.size] - 1 if us.size else np.empty(0, int)
    expected = int((uq[ends] - uq[starts] + 1).sum()) if us.size else 0

    state, current, assumed = presence.before(w.start_ts)
    sessions = {session_names[int(i)] for i in np.unique(us)}
    if current is not None:
        sessions.add(current)
    online = down = 0.0
    failures = outages = 0
    if state == DOWN:
        outages = 1
    prev = w.start_ts
    lo = bisect.bisect_left(presence.times, w.start_ts)
    hi = bisect.bisect_left(presence.times, w.end_ts)
    for j in range(lo, hi):
        at, new = presence.times[j], presence.states[j]
        if state == ONLINE:
            online += at - prev
        else:
            down += at - prev
        if state == ONLINE and new == DOWN:
            failures += 1
            outages += 1
        if new == ONLINE:
            sessions.add(presence.sessions[j])
        state, prev = new, at
    if state == ONLINE:
        online += w.end_ts - prev
    else:
        down += w.end_ts - prev
    nominal = w.length / interval_s if interval_s and interval_s > 0 else None
    return WindowStats(
        length=w.length,
        online_s=online,
        down_s=down,
        failures=failures,
        outages=outages,
        received=int(keep.size),
        expected_seq=expected,
        expected_nominal=nominal,
        reconnects=max(0, len(sessions) - 1),
        latencies=(r[keep] - t[keep]).astype(np.float64),
        assumed_online=assumed,
    )
