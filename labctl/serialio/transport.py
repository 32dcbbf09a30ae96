"""One serial device: open → announce → read frames → readings, until the port goes away;
then offline, reopen with backoff, a new session, and on again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from labctl.bus.edge import EdgeResult, PresenceChange, Rejection
from labctl.config import SerialDeviceSettings
from labctl.protocol.payloads import Manifest, State
from labctl.readings import DeviceRef, Reading
from labctl.rig.directory import DeviceDirectory
from labctl.serial_driver import DecodeResult, Frame, SerialDriver
from labctl.serialio.clock import Clock, Stamper
from labctl.serialio.port import PortError, PortGone, SerialPort, open_port

log = logging.getLogger(__name__)

Sink = Callable[[EdgeResult], Awaitable[None]]
"""Where results go: ``Controller.accept_local`` (spooled, then the listeners)."""

_READ_SLICE_S = 0.25
"""Longest wait for bytes before checking for stop and silence again."""


@dataclass
class SerialStats:
    """What happened on one device's port, for tests, logs and ``labctl devices``."""

    opens: int = 0
    open_failures: int = 0
    unplugs: int = 0
    silences: int = 0
    frames: int = 0
    readings: int = 0
    replies: int = 0
    discarded_runs: int = 0
    discarded_bytes: Counter[str] = field(default_factory=Counter)
    last_error: str = ""


class SerialTransport:
    """Runs one configured serial device until :meth:`stop` (or cancellation)."""

    def __init__(
        self,
        cfg: SerialDeviceSettings,
        driver: SerialDriver,
        directory: DeviceDirectory,
        sink: Sink,
        clock: Clock,
        *,
        grid_origin: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.driver = driver
        self.directory = directory
        self.sink = sink
        self.clock = clock
        self.grid_origin = grid_origin
        self.ref = DeviceRef(cfg.vendor, cfg.id)
        self.stats = SerialStats()
        self.replies: deque[Frame] = deque(maxlen=50)
        """Recent command replies (the drivers' ``reply`` frames)."""
        self.session: str | None = None
        self._stop = asyncio.Event()
        self._baud = cfg.baud or driver.default_baud
        channels = driver.channels()
        self._period = 1.0 / max(c.rate_hz for c in channels)
        self._topic = f"serial:{cfg.path}"
        # One stamper for the device's whole life, not one per session: a session that starts
        # right after a reopen must not stamp a reading at (or before) the last one of the
        # previous session — the TSDB keys points by series and time, and would keep only one.
        self._stamper = Stamper(clock, self._period, grid_origin)

    def stop(self) -> None:
        """Ask :meth:`run` to let go of the port (sleep commands, offline) and return."""
        self._stop.set()

    async def run(self) -> None:
        """Open, read, reopen with backoff after an unplug, until :meth:`stop`."""
        delay = self.cfg.backoff_min_s
        while not self._stop.is_set():
            try:
                port = await asyncio.to_thread(open_port, self.cfg.path, self._baud)
            except PortError as exc:
                self.stats.open_failures += 1
                if str(exc) != self.stats.last_error:
                    log.warning("%s: %s; retrying", self.ref, exc)
                self.stats.last_error = str(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)
                continue
            delay = self.cfg.backoff_min_s
            try:
                await self._session(port)
            finally:
                port.close()

    # -- one session -----------------------------------------------------------------------

    async def _session(self, port: SerialPort) -> None:
        session = uuid.uuid4().hex[:12]
        self.session = session
        self.stats.opens += 1
        seq = 0
        manifest = self._manifest(session)
        self.directory.apply_manifest(self.ref, manifest)
        self.directory.apply_state(self.ref, State(state="online", session=session))
        await self.sink(
            EdgeResult(
                presence=[
                    PresenceChange(self.ref, "manifest", session),
                    PresenceChange(self.ref, "online", session),
                ]
            )
        )
        log.info("%s: online on %s (session %s)", self.ref, self.cfg.path, session)
        decoder = self.driver.decoder()
        stamper = self._stamper
        why = "stopped"
        try:
            for cmd in self.driver.startup():
                await port.write(cmd)
            async with asyncio.TaskGroup() as tg:
                poller = None
                poll = self.driver.poll()
                if poll is not None:
                    poller = tg.create_task(self._poll(port, poll))
                last_valid = time.monotonic()
                while not self._stop.is_set():
                    quiet = time.monotonic() - last_valid
                    if quiet >= self.cfg.silence_s:
                        self.stats.silences += 1
                        why = f"no valid frame for {quiet:.1f} s"
                        break
                    try:
                        data = await asyncio.wait_for(
                            port.read(), min(_READ_SLICE_S, self.cfg.silence_s - quiet)
                        )
                    except TimeoutError:
                        continue
                    result = decoder.feed(data)
                    if result.frames:
                        last_valid = time.monotonic()
                    seq = await self._deliver(result, session, seq, stamper)
                if poller is not None:
                    poller.cancel()
            if self._stop.is_set():
                for cmd in self.driver.shutdown():
                    await port.write(cmd)
        except* PortGone as eg:
            self.stats.unplugs += 1
            why = str(eg.exceptions[0])
        await self._deliver(decoder.flush(), session, seq, stamper)
        self.directory.apply_state(self.ref, State(state="offline", session=session))
        self.stats.last_error = why
        log.warning("%s: offline (%s)", self.ref, why)
        await self.sink(EdgeResult(presence=[PresenceChange(self.ref, "offline", session)]))

    async def _poll(self, port: SerialPort, cmd: bytes) -> None:
        interval = self.driver.poll_interval_s
        due = self.clock.now()
        while True:
            now = self.clock.now()
            if now >= due:
                await port.write(cmd)
                # Missed polls are skipped, not made up in a burst: a read is "the value now".
                due += interval * (math.floor((now - due) / interval) + 1)
            await asyncio.sleep(max(0.001, self.clock.real_seconds(due - self.clock.now())))

    async def _deliver(self, result: DecodeResult, session: str, seq: int, stamper: Stamper) -> int:
        out = EdgeResult()
        rec = self.directory.record(self.ref)
        received = time.time_ns()
        for frame in result.frames:
            self.stats.frames += 1
            if not frame.values:
                self.stats.replies += 1
                self.replies.append(frame)
                continue
            rec.sequences.accept(session, seq)
            out.readings.append(
                Reading(
                    self.ref,
                    self.driver.stream,
                    session,
                    seq,
                    stamper.stamp(),
                    dict(frame.values),
                    received,
                )
            )
            seq += 1
        for d in result.discards:
            self.stats.discarded_runs += 1
            self.stats.discarded_bytes[d.reason] += len(d.data)
            detail = f"discarded {len(d.data)} byte(s) ({d.reason}): {d.data[:32].hex(' ')}"
            out.rejections.append(
                Rejection(
                    self._topic, self.ref.vendor, self.ref.device, f"serial_{d.reason}", detail
                )
            )
            rec.rejected += 1
            rec.last_errors.append(detail)
        if out.readings:
            self.stats.readings += len(out.readings)
            rec.readings += len(out.readings)
            rec.last_seen = received / 1e9
        if out.readings or out.rejections:
            await self.sink(out)
        return seq

    def _manifest(self, session: str) -> Manifest:
        c = self.cfg
        return Manifest.model_validate(
            {
                "schema": "labctl/1",
                "version": 1,
                "session": session,
                "device": {
                    "vendor": c.vendor,
                    "id": c.id,
                    "model": c.model or self.driver.name,
                    "serial": c.serial,
                    "hw_version": f"serial {c.path}"[:128],
                    "sw_version": f"labctl driver {self.driver.name}",
                },
                "channels": [ch.model_dump() for ch in self.driver.channels()],
            }
        )
