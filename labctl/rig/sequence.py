"""Deduplication and gap counting on ``(session, seq)``."""

from __future__ import annotations

from dataclasses import dataclass, field

from labctl.protocol.payloads import SampleIn


@dataclass
class _SessionSeq:
    seen: set[int] = field(default_factory=set)
    low: int = -1
    """Every seq ≤ low was seen or is too old to matter (pruned)."""
    high: int = -1
    count: int = 0


class SequenceTracker:
    """Per-device ``(session, seq)`` bookkeeping: duplicates, gaps, counts.

    Memory is bounded: seqs far below the highest seen are folded into ``low`` (a redelivery
    that old is treated as a duplicate), and only the newest ``max_sessions`` sessions are kept.
    """

    def __init__(self, window: int = 200_000, max_sessions: int = 64) -> None:
        self._window = window
        self._max_sessions = max_sessions
        self._sessions: dict[str, _SessionSeq] = {}

    def accept(self, session: str, seq: int) -> bool:
        """Record ``(session, seq)``; False when it was already seen (a duplicate)."""
        s = self._sessions.get(session)
        if s is None:
            if len(self._sessions) >= self._max_sessions:
                del self._sessions[next(iter(self._sessions))]
            s = self._sessions[session] = _SessionSeq()
        if seq <= s.low or seq in s.seen:
            return False
        s.seen.add(seq)
        s.count += 1
        if seq > s.high:
            s.high = seq
        if len(s.seen) > 2 * self._window:
            cut = s.high - self._window
            s.seen = {q for q in s.seen if q > cut}
            s.low = max(s.low, cut)
        return True

    def accept_samples(self, session: str, samples: list[SampleIn]) -> list[SampleIn]:
        """The samples whose ``(session, seq)`` is new, recorded; duplicates left out."""
        s = self._sessions.get(session)
        if s is None:
            if len(self._sessions) >= self._max_sessions:
                del self._sessions[next(iter(self._sessions))]
            s = self._sessions[session] = _SessionSeq()
        seen, low = s.seen, s.low
        seqs = [sample["seq"] for sample in samples]
        lo = min(seqs)
        if lo > low and seen.isdisjoint(seqs) and len(set(seqs)) == len(seqs):
            # The common case, done in C: nothing seen before, nothing repeated.
            seen.update(seqs)
            s.high = max(s.high, max(seqs))
            s.count += len(samples)
            self._prune(s)
            return samples
        fresh = []
        for sample in samples:
            q = sample["seq"]
            if q > low and q not in seen:
                seen.add(q)
                fresh.append(sample)
                if q > s.high:
                    s.high = q
        s.count += len(fresh)
        self._prune(s)
        return fresh

    def _prune(self, s: _SessionSeq) -> None:
        if len(s.seen) > 2 * self._window:
            cut = s.high - self._window
            s.seen = {q for q in s.seen if q > cut}
            s.low = max(s.low, cut)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per session: (samples accepted, samples missing between the first and last seq)."""
        out: dict[str, tuple[int, int]] = {}
        for name, s in self._sessions.items():
            first = min(s.seen) if s.seen else s.low
            span = s.high - first + 1 if s.high >= 0 else 0
            out[name] = (s.count, max(0, span - s.count) if s.low < 0 else 0)
        return out
