"""The metrics pipeline: points in line protocol, the disk spool, and the sinks that drain it.

* :mod:`labctl.metrics.lineprotocol` — :class:`Point`, :func:`encode`, and the hot-path
  :func:`encode_prefix` / :func:`encode_line`.
* :mod:`labctl.metrics.spool` — :class:`Spool` (append-only segments, the write-ahead log) and
  :class:`OffsetStore` (each sink's committed position).
* :mod:`labctl.metrics.influx` and :mod:`labctl.metrics.drainer` — InfluxDB endpoints, the
  HTTP writer and the spool drainer (import them from there: they pull in httpx and pydantic).
* :mod:`labctl.metrics.points` — what the lab records as points; readings are packed by the
  controller and formatted by the spool process.
* :mod:`labctl.metrics.spool_process` / :mod:`labctl.metrics.spool_link` — the process that
  owns the spool (formats, appends with fsync, drains) and the controller's side of it
  (see ``docs/ingest.md``).
"""

from labctl.metrics.lineprotocol import Point, encode, encode_line, encode_prefix
from labctl.metrics.spool import (
    SPOOL_START,
    OffsetStore,
    SegmentInfo,
    Spool,
    SpoolError,
    SpoolFullError,
    SpoolLockedError,
    SpoolPosition,
    SpoolWriteError,
)

__all__ = [
    "SPOOL_START",
    "OffsetStore",
    "Point",
    "SegmentInfo",
    "Spool",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
    "SpoolPosition",
    "SpoolWriteError",
    "encode",
    "encode_line",
    "encode_prefix",
]
