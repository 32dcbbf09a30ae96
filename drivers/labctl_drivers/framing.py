"""A resynchronising binary frame finder shared by the serial drivers.

The decoder looks for a frame start, waits until the whole candidate frame is buffered, and
checks it. Any failure discards exactly one byte (the false start) and scans on from the next
one, so a valid frame that begins inside rejected bytes is still found, and the frames found
never depend on how the stream was chunked. Discarded bytes are merged into runs, each run
reported with the most telling reason seen in it.
"""

from __future__ import annotations

from collections.abc import Callable

from labctl.serial_driver import DecodeResult, Discard, Frame

_RANK = {"noise": 0, "length": 1, "truncated": 2, "checksum": 3}

FrameLength = Callable[[bytes], int | None]
"""Given the first ``header_len`` bytes of a candidate: its total length, or None if no frame
can start like this."""
Parse = Callable[[bytes], Frame | None]
"""Given a whole candidate frame: the frame, or None if its checksum (or trailer) is wrong."""


class BinaryFramer:
    """Incremental decoder for frames that start with ``start`` (see module docstring)."""

    def __init__(
        self, start: bytes, header_len: int, length: FrameLength, parse: Parse, max_len: int
    ) -> None:
        self._start = start
        self._header_len = max(header_len, len(start))
        self._length = length
        self._parse = parse
        self._max_len = max_len
        self._buf = bytearray()
        self._run = bytearray()
        self._run_reason = "noise"

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> DecodeResult:
        """Take more bytes (see :class:`labctl.serial_driver.FrameDecoder`)."""
        out = DecodeResult()
        self._buf += data
        buf = self._buf
        i = 0
        while True:
            j = buf.find(self._start, i)
            if j < 0:
                # Keep a tail that could be the beginning of the start marker.
                keep = self._partial_start(buf, i)
                self._discard(buf[i : len(buf) - keep], "noise")
                i = len(buf) - keep
                break
            self._discard(buf[i:j], "noise")
            i = j
            if len(buf) - i < self._header_len:
                break
            n = self._length(bytes(buf[i : i + self._header_len]))
            if n is None or not self._header_len <= n <= self._max_len:
                self._discard(buf[i : i + 1], "length")
                i += 1
                continue
            if len(buf) - i < n:
                break
            frame = self._parse(bytes(buf[i : i + n]))
            if frame is None:
                self._discard(buf[i : i + 1], "checksum")
                i += 1
                continue
            self._close_run(out)
            out.frames.append(frame)
            i += n
        del buf[:i]
        self._close_run(out)
        return out

    def flush(self) -> DecodeResult:
        """End of stream: what is held back is a truncated frame."""
        out = DecodeResult()
        self._discard(self._buf, "truncated")
        self._buf.clear()
        self._close_run(out)
        return out

    def _partial_start(self, buf: bytearray, i: int) -> int:
        for k in range(min(len(self._start) - 1, len(buf) - i), 0, -1):
            if buf.endswith(self._start[:k]):
                return k
        return 0

    def _discard(self, data: bytes | bytearray, reason: str) -> None:
        if not data:
            return
        if not self._run or _RANK[reason] > _RANK[self._run_reason]:
            self._run_reason = reason
        self._run += data

    def _close_run(self, out: DecodeResult) -> None:
        if self._run:
            out.discards.append(Discard(bytes(self._run), self._run_reason))
            self._run.clear()
            self._run_reason = "noise"


def u16be(data: bytes, at: int) -> int:
    """Big-endian unsigned 16-bit integer at ``at``."""
    return (data[at] << 8) | data[at + 1]
