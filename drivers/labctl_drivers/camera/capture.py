"""A camera read on its own thread, delivered to asyncio as an async iterator of frames.

OpenCV blocks: ``VideoCapture`` open and read wait on the device or the network, and decoding
a 1080p frame takes milliseconds. So each camera gets one thread that opens the source, reads,
decodes and measures frames, and hands them to the event loop through a bounded queue
(:mod:`labctl_drivers.camera.channel`). The event loop only waits, with timeouts:

* open: the thread opens the source; :meth:`Camera.open` gives up after ``open_timeout_s``
  with ``CameraError: cannot open …: no answer within N s``. FFmpeg is told the same timeout
  (``CAP_PROP_OPEN_TIMEOUT_MSEC``), so its thread gives up too and can be joined.
* read: a live source that stops delivering fails after ``read_timeout_s`` (FFmpeg's
  ``CAP_PROP_READ_TIMEOUT_MSEC`` on the thread; a watchdog on the consumer side for backends
  that ignore it).
* end: a video file or image folder read to its end finishes the iterator cleanly and leaves
  an :class:`EndOfStream` (with the final stats) in :attr:`Camera.end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from labctl_drivers.camera.channel import ChannelClosed, Ended, Failed, FrameChannel
from labctl_drivers.camera.errors import CameraError
from labctl_drivers.camera.frame import CameraInfo, EndOfStream, Frame
from labctl_drivers.camera.measures import measure
from labctl_drivers.camera.readers import Reader, ReadFailed, open_reader
from labctl_drivers.camera.source import CameraSource
from labctl_drivers.camera.stats import CameraStats, CaptureCounters, RateWindow

log = logging.getLogger(__name__)

RETRY_S = 0.01
"""Pause between failed reads of a live source (until its read timeout)."""
WATCHDOG_SLACK_S = 0.25
"""The consumer's watchdog waits this much longer than the thread's own read timeout, so the
thread's error (which knows more) normally arrives first."""
JOIN_GRACE_S = 1.0
"""Beyond the open/read timeouts, how long closing waits for the capture thread."""


class Camera:
    """One camera of any source kind (USB, URL, file, folder), read on its own thread.

    ::

        async with Camera(CameraSource.parse("rtsp://cam-1/stream")) as cam:
            async for frame in cam.frames():
                ...
        print(cam.stats(), cam.end)
    """

    def __init__(self, source: CameraSource | str | int) -> None:
        if not isinstance(source, CameraSource):
            source = CameraSource.model_validate({"source": source})
        self.source = source
        self._stop = threading.Event()
        self._counters = CaptureCounters()
        self._rate = RateWindow()
        self._delivered = 0
        self._interval: float | None = None
        self._thread: threading.Thread | None = None
        self._channel: FrameChannel[Frame] | None = None
        self._info: CameraInfo | None = None
        self._end: EndOfStream | None = None
        self._closed = False
        self._consuming = False

    @property
    def info(self) -> CameraInfo | None:
        """What the opened source is (None before :meth:`open`)."""
        return self._info

    @property
    def end(self) -> EndOfStream | None:
        """Set when a file or folder was read to its end."""
        return self._end

    @property
    def thread_alive(self) -> bool:
        """Whether the capture thread still runs (False once closed and joined)."""
        return self._thread is not None and self._thread.is_alive()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> CameraInfo:
        """Start the capture thread and wait until the source opened (``open_timeout_s``)."""
        if self._thread is not None:
            raise CameraError(f"{self.source.label} is already open")
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[CameraInfo] = loop.create_future()
        self._channel = FrameChannel(loop, self.source.queue_frames, self.source.drops_oldest)
        self._thread = threading.Thread(
            target=self._run, args=(loop, opened), name=f"camera {self.source.label}", daemon=True
        )
        self._thread.start()
        try:
            self._info = await asyncio.wait_for(opened, self.source.open_timeout_s)
        except TimeoutError:
            await self.close()
            raise CameraError(
                f"cannot open {self.source.label}: "
                f"no answer within {self.source.open_timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:
            self._abandon()  # the thread gives up on its own; do not delay the cancellation
            raise
        except BaseException:
            await self.close()
            raise
        return self._info

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames in capture order until a file or folder ends (then :attr:`end` is set).

        Raises CameraError when a live source stops delivering. One consumer at a time.
        """
        channel = self._channel
        if channel is None or self._info is None:
            raise CameraError(f"{self.source.label} is not open (use `async with Camera(…)`)")
        if self._consuming:
            raise CameraError(f"{self.source.label} already has a consumer")
        self._consuming = True
        wait = self.source.read_timeout_s + (self._interval or 0.0) + WATCHDOG_SLACK_S
        try:
            while True:
                try:
                    item = await channel.get(wait)
                except TimeoutError:
                    self._stop.set()
                    raise CameraError(
                        f"{self.source.label} stopped delivering: "
                        f"no frame within {self.source.read_timeout_s:g} s"
                    ) from None
                except ChannelClosed:
                    return
                if isinstance(item, Ended):
                    self._end = EndOfStream(item.reason, self.stats())
                    return
                if isinstance(item, Failed):
                    raise CameraError(item.message)
                self._delivered += 1
                self._rate.add(time.monotonic())
                yield item
        finally:
            self._consuming = False

    def stats(self) -> CameraStats:
        """Counters and rates now."""
        captured, errors, capture_fps, last_error = self._counters.snapshot()
        queued, dropped = self._channel.counts() if self._channel is not None else (0, 0)
        return CameraStats(
            captured=captured,
            delivered=self._delivered,
            dropped=dropped,
            read_errors=errors,
            queued=queued,
            fps=self._rate.rate(),
            capture_fps=capture_fps,
            last_error=last_error,
        )

    async def close(self) -> None:
        """Stop capturing, release the source and join the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._abandon()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        # The thread may be inside an OpenCV call bounded by the open/read timeouts.
        budget = max(self.source.open_timeout_s, self.source.read_timeout_s) + JOIN_GRACE_S
        await asyncio.to_thread(thread.join, budget)
        if thread.is_alive():
            log.warning(
                "%s: capture thread still blocked in OpenCV after %.1f s; left to finish alone",
                self.source.label,
                budget,
            )

    def _abandon(self) -> None:
        self._stop.set()
        if self._channel is not None:
            self._channel.close()

    # -- capture thread ------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[CameraInfo]) -> None:
        label = self.source.label
        channel = self._channel
        assert channel is not None
        reader: Reader | None = None
        try:
            try:
                reader = open_reader(self.source)
                self._interval = self._pacing(reader.info)
            except CameraError as exc:
                _resolve(loop, opened, exc)
                return
            except Exception as exc:  # cv2.error and the like
                _resolve(loop, opened, CameraError(f"cannot open {label}: {exc}"))
                return
            if self._stop.is_set():
                return
            _resolve(loop, opened, reader.info)
            self._capture(reader, channel)
        except CameraError as exc:
            channel.fail(str(exc))
        except Exception as exc:
            log.exception("%s: capture failed", label)
            channel.fail(f"{label}: capture failed: {exc}")
        finally:
            if reader is not None:
                reader.release()

    def _pacing(self, info: CameraInfo) -> float | None:
        src = self.source
        if src.kind not in ("file", "folder"):
            return None
        if src.fps is not None:
            return 1.0 / src.fps
        if src.realtime:
            if info.fps is None:
                raise CameraError(f"cannot pace {src.label} in real time: it declares no frame "
                                  "rate; give fps instead")  # fmt: skip
            return 1.0 / info.fps
        return None

    def _capture(self, reader: Reader, channel: FrameChannel[Frame]) -> None:
        src, interval = self.source, self._interval
        last_frame = next_at = time.monotonic()
        while not self._stop.is_set():
            if interval is not None:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            try:
                raw = reader.read()
            except ReadFailed as exc:
                self._counters.error(str(exc))
                if not reader.live:  # an unreadable image in a folder: skip it
                    log.warning("%s: %s; skipped", src.label, exc)
                    continue
                if time.monotonic() - last_frame >= src.read_timeout_s:
                    raise CameraError(
                        f"{src.label} stopped delivering: "
                        f"no frame within {src.read_timeout_s:g} s ({exc})"
                    ) from None
                self._stop.wait(RETRY_S)
                continue
            if raw is None:
                channel.finish(self._end_reason(reader))
                return
            last_frame = raw.mono_ts
            if interval is not None:
                # A paced source behaves like a camera: after a stall it does not burst.
                next_at = max(next_at + interval, raw.mono_ts - interval)
            self._counters.frame(raw.mono_ts)
            frame = Frame(
                raw.index, raw.mono_ts, raw.wall_ts, raw.image, measure(raw.image), raw.name
            )
            if not channel.put(frame):
                return

    def _end_reason(self, reader: Reader) -> str:
        captured, errors, _, _ = self._counters.snapshot()
        declared = reader.info.frame_count
        if self.source.kind == "folder":
            return f"end of folder: {captured} images read, {errors} unreadable"
        note = f" (the file declares {declared})" if declared and declared != captured else ""
        return f"end of {self.source.kind}: {captured} frames{note}"


def _resolve(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[CameraInfo],
    value: CameraInfo | CameraError,
) -> None:
    def settle() -> None:
        if fut.done():  # the opener gave up (timeout, cancelled)
            return
        if isinstance(value, CameraError):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(settle)
