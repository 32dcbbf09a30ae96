"""The spool process: formats readings into line protocol, appends them to the spool with an
fsync, and drains the spool into the TSDBs.

The controller starts it (``python -m labctl.metrics.spool_process --fd N``) through
:class:`labctl.metrics.spool_link.SpoolLink` and is its only client. It is the spool's one
writer, so its drainers know what is fsync'd and never send a byte that could still be cut
back. Formatting and draining here keep them off the controller's interpreter lock: the
controller validates and routes, this process writes (see docs/ingest.md).

Requests are served in order, one spool append each; every reply says where the spool ends.
Ctrl-C goes to the whole process group: this process ignores SIGINT and leaves when the
controller says ``close`` (after its drainers' current batches) or when the socket closes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from typing import Any

import orjson

from labctl.gc_tuning import tune_for_ingest
from labctl.metrics.drain_thread import ThreadedDrainer
from labctl.metrics.drainer import SpoolDrainer
from labctl.metrics.influx import InfluxEndpoint, InfluxWriter
from labctl.metrics.points import format_block
from labctl.metrics.spool import (
    OffsetStore,
    Spool,
    SpoolError,
    SpoolFullError,
    SpoolLockedError,
    SpoolWriteError,
)
from labctl.metrics.spool_wire import (
    HEAD,
    MAX_HEADER,
    frame,
    position_json,
    status_json,
    unpack_block,
)

log = logging.getLogger("labctl.spool")

GROUP_REQUESTS = 64
GROUP_BYTES = 16 * 1024 * 1024


class FrameReader:
    """Frames from a blocking socket, with a look at whether another one is already there."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(n - len(self.buf), 1024 * 1024))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read(self) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None at the end of the stream."""
        if not self._fill(HEAD.size):
            return None
        hlen, blen = HEAD.unpack_from(self.buf)
        if hlen > MAX_HEADER:
            raise ValueError(f"frame header of {hlen} bytes")
        end = HEAD.size + hlen + blen
        if not self._fill(end):
            return None
        header = orjson.loads(bytes(self.buf[HEAD.size : HEAD.size + hlen]))
        body = bytes(self.buf[HEAD.size + hlen : end])
        del self.buf[:end]
        if not isinstance(header, dict):
            raise ValueError("frame header is not an object")
        return header, body

    def take_arrived(self) -> None:
        """Move what has arrived on the socket into the buffer, without waiting."""
        while True:
            try:
                chunk = self.sock.recv(1024 * 1024, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                return  # the end of the stream: read() reports it once the buffer is used up
            self.buf += chunk

    def has_frame(self) -> bool:
        """True when a whole frame is in the buffer (reading it will not wait)."""
        if len(self.buf) < HEAD.size:
            return False
        hlen, blen = HEAD.unpack_from(self.buf)
        return bool(len(self.buf) >= HEAD.size + hlen + blen)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, SpoolFullError):
        return "full"
    if isinstance(exc, SpoolLockedError):
        return "locked"
    if isinstance(exc, SpoolWriteError):
        return "write"
    if isinstance(exc, SpoolError):
        return "spool"
    return "internal"


class SpoolServer:
    """Serves one controller over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = FrameReader(sock)
        self.spool: Spool | None = None
        self.drainers: list[ThreadedDrainer] = []

    def send(self, header: dict[str, Any]) -> None:
        self.sock.sendall(frame(header))

    def open(self, req: dict[str, Any]) -> bool:
        """Open the spool and start the drainers; say so (or why not) to the controller."""
        logging.basicConfig(
            level=int(req.get("log_level", logging.WARNING)),
            format="%(levelname)s %(name)s: %(message)s",
        )
        try:
            spool = Spool(req["directory"], segment_bytes=int(req["segment_bytes"]))
        except (SpoolError, OSError) as exc:
            self.send({"error": str(exc), "kind": _error_kind(exc)})
            return False
        self.spool = spool
        offsets = OffsetStore(req["offsets"])
        for raw in req.get("endpoints", []):
            ep = InfluxEndpoint.model_validate(raw)
            d = ThreadedDrainer(SpoolDrainer(spool, offsets, InfluxWriter(ep), ep.name))
            d.start()
            self.drainers.append(d)
        tune_for_ingest()
        self.send({"ready": True, "pos": position_json(spool.position())})
        return True

    def serve(self) -> None:
        """Answer requests until ``close`` or the end of the stream."""
        assert self.spool is not None
        got = self.frames.read()
        while got is not None:
            req, body = got
            op, rid = req.get("op"), req.get("id")
            if op == "close":
                self.shutdown()
                self.send({"id": rid, "closed": True})
                return
            if op == "status":
                self.send({"id": rid, "drainers": [status_json(d.status()) for d in self.drainers]})
                got = self.frames.read()
                continue
            # Group commit: the writes that had arrived by now go to the spool with one fsync
            # (only those: waiting for more would delay the first one's acknowledgement).
            self.frames.take_arrived()
            group = [self._prepare(req, body)]
            size = len(group[0][1] or b"")
            got = None
            while len(group) < GROUP_REQUESTS and size < GROUP_BYTES and self.frames.has_frame():
                got = self.frames.read()
                if got is None or got[0].get("op") not in ("block", "append"):
                    break
                group.append(self._prepare(*got))
                size += len(group[-1][1] or b"")
                got = None
            self._commit(group)
            if got is None:
                got = self.frames.read()

    def _prepare(self, req: dict[str, Any], body: bytes) -> tuple[Any, bytes | None, str]:
        """(id, lines to append or None, error)."""
        op = req.get("op")
        try:
            if op == "block":
                block, text = unpack_block(req, body)
                data = format_block(block) + text
            elif op == "append":
                data = body
            else:
                raise ValueError(f"unknown request {op!r}")
            if data and not data.endswith(b"\n"):
                raise ValueError("spool appends whole lines: data must end with a newline")
        except Exception as exc:  # every failure is the controller's to report
            log.exception("spool request %s failed", op)
            return req.get("id"), None, str(exc)
        return req.get("id"), data, ""

    def _commit(self, group: list[tuple[Any, bytes | None, str]]) -> None:
        """Append the group's lines at once; tell each request where its lines end."""
        assert self.spool is not None
        data = b"".join(d for _, d, _ in group if d)
        try:
            end = self.spool.append(data)
        except SpoolError as exc:  # nothing of the group was kept
            for rid, _, err in group:
                self.send({"id": rid, "error": err or str(exc), "kind": _error_kind(exc)})
            return
        if data:
            for drainer in self.drainers:
                drainer.notify()
        # All of it went into one segment (the spool rolls before an append, never inside).
        offset = end.offset - len(data)
        for rid, d, err in group:
            if d is None:
                self.send({"id": rid, "error": err, "kind": "internal"})
                continue
            offset += len(d)
            self.send({"id": rid, "pos": [end.segment, offset]})

    def shutdown(self) -> None:
        """Stop the drainers after their current batch, then close the spool."""
        for d in self.drainers:
            d.stop_nowait()
        for d in self.drainers:
            d.join(15.0)
        self.drainers = []
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the spool process."""
    ap = argparse.ArgumentParser(prog="labctl-spool", description=__doc__)
    ap.add_argument("--fd", type=int, required=True, help="the connected socket to serve")
    args = ap.parse_args(argv)
    # Ctrl-C reaches every process of the terminal's group; the controller decides when the
    # spool stops, so that its last appends and acknowledgements are not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    server = SpoolServer(sock)
    try:
        got = server.frames.read()
        if got is None or got[0].get("op") != "open":
            return 2
        if not server.open(got[0]):
            return 1
        server.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the controller is gone; what was fsync'd is safe
    finally:
        server.shutdown()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
