"""The metrics pipeline: points in line protocol, the disk spool, and the sinks that drain it.

* :mod:`labctl.metrics.lineprotocol` — :class:`Point`, :func:`encode`, and the hot-path
  :func:`encode_prefix` / :func:`encode_line`.
* :mod:`labctl.metrics.spool` — :class:`Spool` (append-only segments, the write-ahead log) and
  :class:`OffsetStore` (each sink's committed position).
* :mod:`labctl.metrics.influx` — InfluxDB endpoints, the HTTP writer and the spool drainer
  (import it from there: it pulls in httpx and pydantic, which the ingest path does not need).
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
