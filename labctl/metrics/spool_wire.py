"""The frames the controller and its spool process exchange over their socket pair.

A frame is ``!II`` (header length, body length), a JSON header, and a body of raw bytes. A
block of readings travels as a small JSON header (the groups' tag prefixes, keys, sessions and
sizes) and a body of packed arrays (float64 values and timestamps, int64 sequence numbers)
followed by line-protocol text for the points the controller formatted itself. Both ends are
our own processes; still nothing here evaluates or unpickles what it reads.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

import orjson

from labctl.metrics.drainer import DrainerStatus
from labctl.metrics.points import ReadingBlock
from labctl.metrics.spool import SpoolPosition

HEAD = struct.Struct("!II")
MAX_HEADER = 64 * 1024 * 1024


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame: sizes, JSON header, body."""
    h = orjson.dumps(header)
    return HEAD.pack(len(h), len(body)) + h + body


def pack_block(block: ReadingBlock, text: bytes) -> tuple[dict[str, Any], bytes]:
    """A block of readings plus ``text`` (line protocol) as (header fields, body)."""
    groups = [(prefix, keys, sess, len(qs)) for prefix, keys, sess, _, qs, _ in block]
    values: array[float] = array("d")
    seqs: array[int] = array("q")
    stamps: array[float] = array("d")
    for _, _, _, vs, qs, ts in block:
        values.fromlist(vs)
        seqs.fromlist(qs)
        stamps.fromlist(ts)
    body = b"".join((values.tobytes(), seqs.tobytes(), stamps.tobytes(), text))
    return {"groups": groups, "values": len(values), "readings": len(seqs)}, body


def unpack_block(header: dict[str, Any], body: bytes) -> tuple[ReadingBlock, bytes]:
    """The inverse of :func:`pack_block`."""
    nv, nr = int(header["values"]), int(header["readings"])
    if len(body) < nv * 8 + nr * 16:
        raise ValueError(f"block body of {len(body)} bytes cannot hold {nv} values, {nr} readings")
    values: array[float] = array("d")
    seqs: array[int] = array("q")
    stamps: array[float] = array("d")
    values.frombytes(body[: nv * 8])
    seqs.frombytes(body[nv * 8 : nv * 8 + nr * 8])
    stamps.frombytes(body[nv * 8 + nr * 8 : nv * 8 + nr * 16])
    flat_v, flat_q, flat_t = values.tolist(), seqs.tolist(), stamps.tolist()
    block: ReadingBlock = []
    iv = iq = 0
    for prefix, keys, sess, n in header["groups"]:
        k = len(keys)
        block.append(
            (
                str(prefix),
                [str(x) for x in keys],
                str(sess),
                flat_v[iv : iv + n * k],
                flat_q[iq : iq + n],
                flat_t[iq : iq + n],
            )
        )
        iv, iq = iv + n * k, iq + n
    if iv != nv or iq != nr:
        raise ValueError(f"block header says {nv} values/{nr} readings; its groups hold {iv}/{iq}")
    return block, body[nv * 8 + nr * 16 :]


def position_json(pos: SpoolPosition) -> list[int]:
    """A position as ``[segment, offset]``."""
    return [pos.segment, pos.offset]


def position_of(value: Any) -> SpoolPosition:
    """The inverse of :func:`position_json`."""
    return SpoolPosition(int(value[0]), int(value[1]))


def status_json(st: DrainerStatus) -> dict[str, Any]:
    """A drainer's status as JSON-able fields."""
    return {
        "name": st.name,
        "committed": None if st.committed is None else position_json(st.committed),
        "points_written": st.points_written,
        "batches": st.batches,
        "retries": st.retries,
        "rejected_batches": st.rejected_batches,
        "rejected_points": st.rejected_points,
        "last_error": st.last_error,
    }


def status_of(d: dict[str, Any]) -> DrainerStatus:
    """The inverse of :func:`status_json`."""
    committed = d.get("committed")
    return DrainerStatus(
        name=str(d["name"]),
        committed=None if committed is None else position_of(committed),
        points_written=int(d["points_written"]),
        batches=int(d["batches"]),
        retries=int(d["retries"]),
        rejected_batches=int(d["rejected_batches"]),
        rejected_points=int(d["rejected_points"]),
        last_error=d.get("last_error"),
    )
