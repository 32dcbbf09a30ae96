"""Counters of a camera: what it captured, delivered, dropped, failed to read, and how fast."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

RATE_WINDOW_S = 2.0
"""Sliding window of the frame rates, seconds."""


@dataclass(frozen=True, slots=True)
class CameraStats:
    """A snapshot of one camera's counters."""

    captured: int
    """Frames read from the source."""
    delivered: int
    """Frames the consumer received."""
    dropped: int
    """Frames dropped because the consumer was slower than the source (queue full)."""
    read_errors: int
    """Failed reads: a live source that returned no frame, an unreadable image file."""
    queued: int
    """Frames waiting for the consumer."""
    fps: float
    """Delivered frames per second over the last ``RATE_WINDOW_S`` seconds of deliveries."""
    capture_fps: float
    """Captured frames per second over the last ``RATE_WINDOW_S`` seconds of captures."""
    last_error: str | None = None
    """The newest read error, in words."""


class RateWindow:
    """Events per second over a sliding window of their (monotonic) times.

    The rate is measured between the first and the last event in the window, so a stream
    that has ended keeps the rate it had rather than decaying to zero.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, t: float) -> None:
        """Count one event at monotonic time ``t``."""
        times = self._times
        times.append(t)
        while times[0] < t - self.window_s:
            times.popleft()

    def rate(self) -> float:
        """Events per second, 0 with fewer than two events."""
        times = self._times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


class CaptureCounters:
    """The capture thread's counters, read from the event loop (hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rate = RateWindow()
        self.captured = 0
        self.read_errors = 0
        self.last_error: str | None = None

    def frame(self, t: float) -> None:
        """One frame captured at monotonic time ``t``."""
        with self._lock:
            self.captured += 1
            self._rate.add(t)

    def error(self, why: str) -> None:
        """One failed read."""
        with self._lock:
            self.read_errors += 1
            self.last_error = why

    def snapshot(self) -> tuple[int, int, float, str | None]:
        """captured, read errors, capture fps, last error."""
        with self._lock:
            return self.captured, self.read_errors, self._rate.rate(), self.last_error
