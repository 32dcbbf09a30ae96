"""The controller's side of the spool process (:mod:`labctl.metrics.spool_process`).

The controller validates, dedupes and routes readings on its event loop; turning them into
line protocol, appending with an fsync and draining to the TSDBs happen in the spool process,
on the other core, off the controller's interpreter lock. Requests are pipelined: the
controller sends batch *n + 1* while the spool process writes batch *n*; every request gets a
future that resolves to the spool's end after its append (or raises what the append raised).

If the spool process dies, every pending and later request raises :class:`SpoolError` in
words; nothing it had not fsync'd was acknowledged to the broker, so the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from labctl.metrics.drainer import DrainerStatus
from labctl.metrics.influx import InfluxEndpoint
from labctl.metrics.points import ReadingBlock
from labctl.metrics.spool import (
    SpoolError,
    SpoolFullError,
    SpoolLockedError,
    SpoolPosition,
    SpoolWriteError,
)
from labctl.metrics.spool_wire import HEAD, frame, pack_block, position_of, status_of

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[Exception]] = {
    "full": SpoolFullError,
    "locked": SpoolLockedError,
    "write": SpoolWriteError,
    "spool": SpoolError,
}


def _endpoint_json(ep: InfluxEndpoint) -> dict[str, Any]:
    """The endpoint with its secrets in clear: sent over the private socket, never on argv."""
    data = ep.model_dump(mode="json")
    for key in ("password", "token"):
        secret = getattr(ep, key)
        if secret is not None:
            data[key] = secret.get_secret_value()
    return data


class RemoteDrainer:
    """What the controller sees of one drainer in the spool process."""

    def __init__(self, link: SpoolLink, name: str) -> None:
        self.link = link
        self.name = name
        self._status = DrainerStatus(name, None, 0, 0, 0, 0, 0, None)

    def status(self) -> DrainerStatus:
        """The latest status the spool process reported."""
        return self._status

    async def drain_to(self, position: SpoolPosition, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the TSDB accepted everything before ``position``; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(SpoolError):
                await self.link.refresh()
            committed = self._status.committed
            if committed is not None and committed >= position:
                return True
            if time.monotonic() >= deadline or self.link.broken is not None:
                return False
            await asyncio.sleep(0.02)


class SpoolLink:
    """Starts the spool process and talks to it. Use ``async with``."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        endpoints: list[InfluxEndpoint],
        offsets: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.endpoints = list(endpoints)
        self.offsets = offsets or self.directory / "offsets"
        self.start_timeout_s = start_timeout_s
        self.drainers = [RemoteDrainer(self, ep.name) for ep in endpoints]
        self.broken: str | None = None
        self._position = SpoolPosition(1, 0)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._replies: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> SpoolLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the process, open the spool there and start the drainers."""
        parent, child = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "labctl.metrics.spool_process",
                "--fd",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._reader, self._writer = await asyncio.open_unix_connection(
            sock=parent, limit=1024 * 1024
        )
        self._writer.write(
            frame(
                {
                    "op": "open",
                    "directory": str(self.directory),
                    "segment_bytes": self.segment_bytes,
                    "offsets": str(self.offsets),
                    "endpoints": [_endpoint_json(ep) for ep in self.endpoints],
                    "log_level": logging.getLogger().getEffectiveLevel(),
                }
            )
        )
        try:
            hello = await asyncio.wait_for(self._read(), self.start_timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            await self._stop_process()
            raise SpoolError(
                f"the spool process did not start within {self.start_timeout_s:g} s "
                f"({self._exit_words()})"
            ) from None
        if "error" in hello:
            await self._stop_process()
            raise _ERRORS.get(hello.get("kind", ""), SpoolError)(hello["error"])
        self._position = position_of(hello["pos"])
        self._replies = asyncio.create_task(self._read_replies(), name="spool-replies")

    async def close(self, timeout_s: float = 20.0) -> None:
        """Let the drainers finish their batch, close the spool and end the process."""
        if self._closing:
            return
        self._closing = True
        if self._writer is not None and self.broken is None:
            with contextlib.suppress(SpoolError, TimeoutError):
                await asyncio.wait_for(self._request({"op": "close"}), timeout_s)
        if self._replies is not None:
            self._replies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replies
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        await self._stop_process()

    async def _stop_process(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            log.warning("the spool process did not exit; terminating it")
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    @property
    def pid(self) -> int | None:
        """The spool process's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def _exit_words(self) -> str:
        code = self._proc.returncode if self._proc is not None else None
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit status {code}"

    # -- requests --------------------------------------------------------------------------

    def position(self) -> SpoolPosition:
        """The spool's end after the last append this link has heard of."""
        return self._position

    def send_append(self, data: bytes) -> asyncio.Future[SpoolPosition]:
        """Queue an append of whole lines; the future resolves once they are fsync'd."""
        return self._send_write({"op": "append"}, data)

    def send_block(self, block: ReadingBlock, text: bytes) -> asyncio.Future[SpoolPosition]:
        """Queue readings (formatted in the spool process) followed by ``text``."""
        header, body = pack_block(block, text)
        header["op"] = "block"
        return self._send_write(header, body)

    async def append(self, data: bytes) -> SpoolPosition:
        """Append whole lines and wait until they are fsync'd."""
        return await self.send_append(data)

    async def drain(self) -> None:
        """Wait while the socket's send buffer is over its high-water mark (backpressure)."""
        if self._writer is not None and self.broken is None:
            try:
                await self._writer.drain()
            except ConnectionError as exc:
                self._break(f"lost the spool process ({exc})")

    async def refresh(self) -> None:
        """Ask for the drainers' status (and wait for it)."""
        reply = await self._request({"op": "status"})
        for d, raw in zip(self.drainers, reply.get("drainers", []), strict=False):
            d._status = status_of(raw)

    def _send_write(self, header: dict[str, Any], body: bytes) -> asyncio.Future[SpoolPosition]:
        loop = asyncio.get_running_loop()
        out: asyncio.Future[SpoolPosition] = loop.create_future()
        reply = self._send(header, body)

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            if out.cancelled():
                return
            if f.cancelled():
                out.cancel()
            elif (exc := f.exception()) is not None:
                out.set_exception(exc)
            else:
                r = f.result()
                if "error" in r:
                    out.set_exception(_ERRORS.get(r.get("kind", ""), SpoolError)(r["error"]))
                else:
                    pos = position_of(r["pos"])
                    self._position = max(self._position, pos)
                    out.set_result(pos)

        reply.add_done_callback(done)
        return out

    def _send(self, header: dict[str, Any], body: bytes = b"") -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.broken is not None or self._writer is None:
            fut.set_exception(SpoolError(self.broken or "the spool process is not running"))
            return fut
        rid = next(self._ids)
        header["id"] = rid
        self._pending[rid] = fut
        self._writer.write(frame(header, body))
        return fut

    async def _request(self, header: dict[str, Any]) -> dict[str, Any]:
        fut = self._send(header)
        await self.drain()
        reply = await fut
        if "error" in reply:
            raise _ERRORS.get(reply.get("kind", ""), SpoolError)(reply["error"])
        return reply

    async def _read(self) -> dict[str, Any]:
        assert self._reader is not None
        hlen, blen = HEAD.unpack(await self._reader.readexactly(HEAD.size))
        header = orjson.loads(await self._reader.readexactly(hlen))
        if blen:
            await self._reader.readexactly(blen)
        if not isinstance(header, dict):
            raise SpoolError("the spool process sent something that is not a reply")
        return header

    async def _read_replies(self) -> None:
        try:
            while True:
                reply = await self._read()
                fut = self._pending.pop(int(reply.get("id", -1)), None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
                if reply.get("closed"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, SpoolError, ValueError) as exc:
            if not self._closing:
                if self._proc is not None:  # the exit status, for the message
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._proc.wait(), 1.0)
                self._break(
                    f"the spool process stopped ({self._exit_words()}; {type(exc).__name__}); "
                    "readings not yet spooled were not acknowledged and will be redelivered"
                )

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            log.error("%s", why)
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(SpoolError(why))


__all__ = ["RemoteDrainer", "SpoolLink"]
