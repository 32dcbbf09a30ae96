"""The spool's files on a real disk: segments, whole-line reads, torn tails, full disks, offsets."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import pytest

from labctl.metrics.spool import (
    SPOOL_START,
    OffsetStore,
    Spool,
    SpoolFullError,
    SpoolLockedError,
    SpoolPosition,
    SpoolWriteError,
)


def lines(start: int, n: int) -> bytes:
    return b"".join(b"m v=%di %d\n" % (i, i) for i in range(start, start + n))


def read_all(spool: Spool, start: SpoolPosition = SPOOL_START, max_bytes: int = 1 << 20) -> bytes:
    out: list[bytes] = []
    pos = start
    while True:
        data, pos = spool.read(pos, max_bytes)
        if not data:
            return b"".join(out)
        out.append(data)


def test_append_returns_end_positions_and_read_returns_everything(tmp_path: Path) -> None:
    with Spool(tmp_path) as s:
        assert s.position() == SpoolPosition(1, 0)
        p1 = s.append(b"a v=1 1\n")
        p2 = s.append(b"b v=2 2\nc v=3 3\n")
        assert p1 == SpoolPosition(1, 8)
        assert p2 == SpoolPosition(1, 24) == s.position()
        assert p1 < p2
        assert read_all(s) == b"a v=1 1\nb v=2 2\nc v=3 3\n"
        assert s.read(p1, 100) == (b"b v=2 2\nc v=3 3\n", p2)
        assert s.read(p2, 100) == (b"", p2)
        assert (tmp_path / "00000001.lp").read_bytes() == b"a v=1 1\nb v=2 2\nc v=3 3\n"


def test_append_refuses_partial_lines(tmp_path: Path) -> None:
    with Spool(tmp_path) as s, pytest.raises(ValueError, match="newline"):
        s.append(b"no newline")


def test_segments_roll_without_splitting_lines(tmp_path: Path) -> None:
    data = [lines(i * 10, 10) for i in range(20)]
    with Spool(tmp_path, segment_bytes=300) as s:
        for d in data:
            s.append(d)
        segs = s.segments()
        assert [g.number for g in segs] == list(range(1, len(segs) + 1))
        assert len(segs) > 5
        for g in segs:
            body = g.path.read_bytes()
            assert body.endswith(b"\n")
            assert g.size == len(body)
            assert g.size <= 300 or body.count(b"\n") == 10  # only one oversize batch per segment
        assert read_all(s) == b"".join(data)
        # Small reads cross segment boundaries too, and never cut a line.
        assert read_all(s, max_bytes=37) == b"".join(data)
        assert s.position() == SpoolPosition(segs[-1].number, segs[-1].size)
        assert s.sha256(1) == __import__("hashlib").sha256(segs[0].path.read_bytes()).hexdigest()


def test_read_returns_at_least_one_long_line(tmp_path: Path) -> None:
    long = b'm s="' + b"x" * 5000 + b'" 1\n'
    with Spool(tmp_path) as s:
        s.append(long + b"m v=1 2\n")
        data, pos = s.read(SPOOL_START, 100)
        assert data == long
        assert pos == SpoolPosition(1, len(long))
        assert s.read(pos, 100)[0] == b"m v=1 2\n"


def test_reader_does_not_lock_and_sees_new_data(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=100) as writer:
        reader = Spool.open_reader(tmp_path)
        assert reader.read(SPOOL_START, 1000) == (b"", SpoolPosition(1, 0))
        writer.append(lines(0, 5))
        writer.append(lines(5, 5))
        assert read_all(reader) == lines(0, 10)
        assert reader.position() == writer.position()
        with pytest.raises(Exception, match="read-only"):
            reader.append(b"x v=1 1\n")
        reader.close()


def test_reader_ignores_a_line_being_written(tmp_path: Path) -> None:
    with Spool(tmp_path) as writer:
        writer.append(b"a v=1 1\n")
        reader = Spool.open_reader(tmp_path)
        # Another process's write in progress: bytes without their newline yet.
        with (tmp_path / "00000001.lp").open("ab") as f:
            f.write(b"b v=2")
        assert reader.read(SPOOL_START, 1000) == (b"a v=1 1\n", SpoolPosition(1, 8))
        assert reader.read(SpoolPosition(1, 8), 1000) == (b"", SpoolPosition(1, 8))


def test_second_writer_is_refused_in_words(tmp_path: Path) -> None:
    with Spool(tmp_path), pytest.raises(SpoolLockedError, match=str(tmp_path)):
        Spool(tmp_path)
    with Spool(tmp_path) as again:  # closing released the lock
        again.append(b"m v=1 1\n")


def test_torn_tail_is_cut_back_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as s:
        s.append(lines(0, 3))
    seg = tmp_path / "00000001.lp"
    with seg.open("ab") as f:
        f.write(b"m v=99i 9")  # a crash in the middle of a write
    with caplog.at_level(logging.WARNING), Spool(tmp_path) as s:
        assert seg.read_bytes() == lines(0, 3)
        assert "cut 9 bytes" in caplog.text
        assert s.append(b"n v=1 1\n") == SpoolPosition(1, len(lines(0, 3)) + 8)
        assert read_all(s) == lines(0, 3) + b"n v=1 1\n"


def test_torn_tail_without_any_newline(tmp_path: Path) -> None:
    tmp_path.joinpath("00000001.lp").write_bytes(b"x" * 100_000)
    with Spool(tmp_path) as s:
        assert s.position() == SpoolPosition(1, 0)


def test_reopen_continues_the_last_segment(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=50) as s:
        for i in range(10):
            s.append(lines(i, 1))
        end = s.position()
    with Spool(tmp_path, segment_bytes=50) as s:
        assert s.position() == end
        s.append(lines(10, 1))
        assert read_all(s) == lines(0, 11)


def _failing_write(real_fd: list[int], fail_errno: int) -> object:
    """An os.write that writes half of the spool's batch, then fails like a full disk."""
    real_write = os.write
    calls = {"n": 0}

    def fake(fd: int, data: bytes | memoryview) -> int:
        if fd not in real_fd:
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(fail_errno, os.strerror(fail_errno))

    return fake


def test_disk_full_cuts_back_and_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Spool(tmp_path) as s:
        before = s.append(lines(0, 3))
        assert s._fd is not None
        monkeypatch.setattr(os, "write", _failing_write([s._fd], errno.ENOSPC))
        with pytest.raises(SpoolFullError) as info:
            s.append(lines(3, 100))
        msg = str(info.value)
        assert f"spool disk full at {tmp_path}" in msg
        assert "bytes free" in msg
        assert "not acknowledged and will be redelivered" in msg
        assert (tmp_path / "00000001.lp").read_bytes() == lines(0, 3)
        assert s.position() == before
        monkeypatch.undo()
        assert s.append(lines(3, 2)) == SpoolPosition(1, len(lines(0, 5)))
        assert read_all(s) == lines(0, 5)


def test_other_write_errors_are_spool_write_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Spool(tmp_path) as s:
        assert s._fd is not None
        monkeypatch.setattr(os, "write", _failing_write([s._fd], errno.EIO))
        with pytest.raises(SpoolWriteError, match="will be redelivered") as info:
            s.append(lines(0, 10))
        assert not isinstance(info.value, SpoolFullError)
        assert (tmp_path / "00000001.lp").read_bytes() == b""


def test_failed_fsync_cuts_back_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(tmp_path) as s:
        s.append(lines(0, 1))
        real_fsync = os.fsync
        fd = s._fd

        def fake_fsync(f: int) -> None:
            if f == fd:
                monkeypatch.setattr(os, "fsync", real_fsync)  # fail once
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(f)

        monkeypatch.setattr(os, "fsync", fake_fsync)
        with pytest.raises(SpoolFullError):
            s.append(lines(1, 1))
        assert read_all(s) == lines(0, 1)


def test_one_writer_and_concurrent_readers(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=4096) as s:
        done = threading.Event()
        seen: list[bytes] = []

        def reader() -> None:
            pos = SPOOL_START
            while True:
                finished = done.is_set()
                data, pos = s.read(pos, 1000)
                seen.append(data)
                if finished and not data:
                    return

        t = threading.Thread(target=reader)
        t.start()
        for i in range(200):
            s.append(lines(i * 5, 5))
        done.set()
        t.join(10)
        assert b"".join(seen) == lines(0, 1000)


def test_offset_store_round_trip_and_atomic_files(tmp_path: Path) -> None:
    store = OffsetStore(tmp_path / "offsets")
    assert store.load("influx") == SPOOL_START
    store.commit("influx", SpoolPosition(3, 1234))
    store.commit("vm", SpoolPosition(1, 5))
    store.commit("influx", SpoolPosition(4, 0))
    again = OffsetStore(tmp_path / "offsets")
    assert again.load("influx") == SpoolPosition(4, 0)
    assert again.load("vm") == SpoolPosition(1, 5)
    assert sorted(p.name for p in (tmp_path / "offsets").iterdir()) == ["influx.json", "vm.json"]
    with pytest.raises(ValueError, match="sink name"):
        store.commit("../evil", SpoolPosition(1, 1))


def test_positions_order() -> None:
    assert SPOOL_START < SpoolPosition(1, 0) < SpoolPosition(1, 10) < SpoolPosition(2, 0)
    assert max(SpoolPosition(2, 1), SpoolPosition(1, 99)) == SpoolPosition(2, 1)
