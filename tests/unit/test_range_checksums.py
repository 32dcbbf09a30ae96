"""A run's spool checksums stay valid when later runs append, and catch altered data."""

from __future__ import annotations

import hashlib
from pathlib import Path

from labctl.metrics.replay import range_checksums, segment_status
from labctl.metrics.spool import Spool


def test_checksums_cover_the_runs_own_bytes(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    with Spool(d, segment_bytes=4096) as spool:
        spool.append(b"before 1\n")
        start = spool.position()
        for i in range(300):  # several segments
            spool.append(b"run line %d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" % i)
        end = spool.position()
        recorded = range_checksums(d, (start.segment, start.offset), (end.segment, end.offset))
        assert len(recorded) >= 2
        spool.append(b"a later run\n" * 50)
    status = segment_status(d, recorded, (start.segment, start.offset), (end.segment, end.offset))
    assert set(status.values()) == {"unchanged"}
    first = d / next(iter(recorded))
    assert recorded[first.name] == hashlib.sha256(first.read_bytes()[start.offset :]).hexdigest()
    # alter one byte inside the run's range
    data = bytearray(first.read_bytes())
    data[start.offset + 3] ^= 1
    first.write_bytes(bytes(data))
    status = segment_status(d, recorded, (start.segment, start.offset), (end.segment, end.offset))
    assert status[first.name] == "changed"
