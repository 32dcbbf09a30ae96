"""The device's store-and-forward buffer and its delivery statistics."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple


class Buffered(NamedTuple):
    """One produced sample waiting for the broker's acknowledgement.

    A sample keeps the session and seq it was produced with, however many reconnects it waits
    through: that pair is what the controller dedupes on.
    """

    k: int
    """Production index of the device (strictly increasing, never reused)."""
    session: str
    seq: int
    ts: float
    values: tuple[float, ...]


class SampleBuffer:
    """A bounded FIFO of samples; samples leave it only when acknowledged.

    When full, new samples are discarded (and counted) rather than old ones: the oldest ones
    may be in flight right now, and a discarded sample still used up its seq, so the
    controller sees the gap and counts it against completeness.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a sample buffer holds at least one sample")
        self.capacity = capacity
        self._items: deque[Buffered] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Buffered) -> bool:
        """Append ``item``; False if the buffer is full and the sample was discarded."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(item)
        return True

    def front(self, limit: int) -> list[Buffered]:
        """Up to ``limit`` samples from the front that share the first one's session."""
        if not self._items:
            return []
        session = self._items[0].session
        return list(
            itertools.takewhile(
                lambda b: b.session == session, itertools.islice(self._items, limit)
            )
        )

    def ack(self, through_k: int) -> int:
        """Drop every sample produced up to index ``through_k``; return how many left."""
        n = 0
        while self._items and self._items[0].k <= through_k:
            self._items.popleft()
            n += 1
        return n


@dataclass
class SessionStats:
    """Acknowledged samples of one session."""

    first_seq: int
    last_seq: int
    count: int = 0


@dataclass
class DeviceStats:
    """What one device produced and what the broker acknowledged."""

    sessions: dict[str, SessionStats] = field(default_factory=dict)
    published: int = 0
    """Samples acknowledged by the broker (each sample counted once)."""
    produced: int = 0
    dropped: int = 0
    """Samples discarded because the buffer was full."""
    unsent: int = 0
    """Samples still buffered when the device stopped (flush timed out)."""
    connects: int = 0

    def record_ack(self, batch: list[Buffered]) -> None:
        """Count an acknowledged batch (all of one session)."""
        session = batch[0].session
        first, last = batch[0].seq, batch[-1].seq
        s = self.sessions.get(session)
        if s is None:
            self.sessions[session] = SessionStats(first, last, len(batch))
        else:
            s.first_seq = min(s.first_seq, first)
            s.last_seq = max(s.last_seq, last)
            s.count += len(batch)
        self.published += len(batch)

    def as_dict(self) -> dict[str, object]:
        """The JSON shape written to the stats file."""
        return {
            "sessions": {
                name: {"first_seq": s.first_seq, "last_seq": s.last_seq, "count": s.count}
                for name, s in self.sessions.items()
            },
            "published": self.published,
            "produced": self.produced,
            "dropped": self.dropped,
            "unsent": self.unsent,
            "connects": self.connects,
        }
