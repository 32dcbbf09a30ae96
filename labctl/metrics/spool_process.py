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
from typing import Any, Protocol

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


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def read_frame(f: _Readable) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at the end of the stream."""
    head = f.read(HEAD.size)
    if len(head) < HEAD.size:
        return None
    hlen, blen = HEAD.unpack(head)
    if hlen > MAX_HEADER:
        raise ValueError(f"frame header of {hlen} bytes")
    header = orjson.loads(f.read(hlen))
    body = f.read(blen) if blen else b""
    if len(body) < blen:
        return None
    if not isinstance(header, dict):
        raise ValueError("frame header is not an object")
    return header, body


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
        self.rfile: _Readable = sock.makefile("rb", buffering=1024 * 1024)
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
        while True:
            got = read_frame(self.rfile)
            if got is None:
                return
            req, body = got
            op, rid = req.get("op"), req.get("id")
            if op == "close":
                self.shutdown()
                self.send({"id": rid, "closed": True})
                return
            if op == "status":
                self.send({"id": rid, "drainers": [status_json(d.status()) for d in self.drainers]})
                continue
            try:
                if op == "block":
                    block, text = unpack_block(req, body)
                    data = format_block(block).encode() + text
                elif op == "append":
                    data = body
                else:
                    raise ValueError(f"unknown request {op!r}")
                pos = self.spool.append(data)
            except Exception as exc:  # every failure is the controller's to report
                if not isinstance(exc, SpoolError):
                    log.exception("spool request %s failed", op)
                self.send({"id": rid, "error": str(exc), "kind": _error_kind(exc)})
                continue
            for d in self.drainers:
                d.notify()
            self.send({"id": rid, "pos": position_json(pos)})

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
        got = read_frame(server.rfile)
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
