"""The spool: append-only segment files of line protocol on local disk.

Every point is written here first. The spool is the embedded default store (a run's points
are in its segments even without any TSDB) and the write-ahead log of the TSDB sinks: each
sink drains it from its own committed position (:class:`OffsetStore`), so a TSDB outage only
makes the spool grow on disk.

Layout of a spool directory::

    spool.lock          flock'd by the one writer
    00000001.lp         segments: whole lines of line protocol, append-only
    00000002.lp
    offsets/{sink}.json committed position of each sink (OffsetStore)
    rejected/…          batches a TSDB refused (written by the sinks)

All methods block on file I/O: call them from a thread (``asyncio.to_thread``). One writer and
any number of readers may share a :class:`Spool` object; a lock keeps them consistent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SEGMENT_SUFFIX = ".lp"
LOCK_NAME = "spool.lock"
_SEGMENT_RE = re.compile(r"^(\d{8,})\.lp$")
_SINK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_CHUNK = 64 * 1024


class SpoolError(RuntimeError):
    """Base class of spool failures."""


class SpoolLockedError(SpoolError):
    """Another process (or another Spool object) already writes this spool."""


class SpoolWriteError(SpoolError):
    """A batch could not be written; the segment was cut back, the spool is still usable."""


class SpoolFullError(SpoolWriteError):
    """The spool's disk is full (ENOSPC/EDQUOT); the batch was not written."""


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    """A place in the spool: byte ``offset`` into segment number ``segment``.

    Positions order by segment, then offset. The end of one segment and the start of the next
    mean the same data; ``SpoolPosition(0, 0)`` (:data:`SPOOL_START`) is before everything.
    """

    segment: int
    offset: int


SPOOL_START = SpoolPosition(0, 0)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file: its number, path and current size in bytes."""

    number: int
    path: Path
    size: int


def segment_name(number: int) -> str:
    """File name of segment ``number``: ``00000001.lp``."""
    return f"{number:08d}{SEGMENT_SUFFIX}"


class Spool:
    """Append-only, fsync'd segment files of line protocol in ``directory``.

    Open for writing (the default) takes an exclusive ``flock`` on ``spool.lock``: a second
    writer gets :class:`SpoolLockedError`. ``readonly=True`` (or :meth:`open_reader`) takes no
    lock and never modifies files; a reader sees what writers have fsync'd.
    """

    def __init__(
        self, directory: Path, segment_bytes: int = 64 * MiB, *, readonly: bool = False
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.readonly = readonly
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment = 0
        self._size = 0
        self._closed = False
        if not readonly:
            self._open_writer()

    @classmethod
    def open_reader(cls, directory: Path) -> Spool:
        """A read-only view of a spool another process (or object) writes."""
        return cls(directory, readonly=True)

    # -- writer ---------------------------------------------------------------------------

    def _open_writer(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(
                f"the spool at {self.directory} is already open for writing by another "
                "process (or another Spool in this one); only one writer may append to a spool"
            ) from None
        self._lock_fd = fd
        try:
            segments = self._scan()
            if segments:
                last = segments[-1]
                self._segment = last.number
                self._size = self._repair_tail(last)
            else:
                self._segment = 1
                self._size = 0
            self._fd = self._open_segment(self._segment)
        except BaseException:
            self.close()
            raise

    def _open_segment(self, number: int) -> int:
        path = self.directory / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(self.directory)  # the new file's directory entry must survive a crash too
        return fd

    def _repair_tail(self, seg: SegmentInfo) -> int:
        """Cut a torn last line (a crash mid-write) back to the last newline; return the size."""
        if seg.size == 0:
            return 0
        with seg.path.open("rb+") as f:
            end = seg.size
            keep = 0
            while end > 0:
                start = max(0, end - _READ_CHUNK)
                f.seek(start)
                chunk = f.read(end - start)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                end = start
            if keep != seg.size:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
                log.warning(
                    "spool segment %s ended with a torn write (a crash mid-append): cut %d bytes "
                    "back to the last whole line",
                    seg.path,
                    seg.size - keep,
                )
        return keep

    def append(self, data: bytes) -> SpoolPosition:
        """Append whole lines (``data`` ends with ``b"\\n"``), fsync, return the end position.

        On failure the segment is cut back to where it was and :class:`SpoolFullError` or
        :class:`SpoolWriteError` is raised: nothing of the batch is kept, so the caller must
        not acknowledge the readings. The spool stays usable.
        """
        if not data:
            return self.position()
        if not data.endswith(b"\n"):
            raise ValueError("spool appends whole lines: data must end with a newline")
        with self._lock:
            fd = self._writer_fd()
            if self._size > 0 and self._size + len(data) > self.segment_bytes:
                fd = self._roll()
            before = self._size
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            except OSError as exc:
                self._cut_back(fd, before)
                raise self._write_error(exc, len(data)) from exc
            self._size = before + len(data)
            return SpoolPosition(self._segment, self._size)

    def _writer_fd(self) -> int:
        if self._closed:
            raise SpoolError(f"the spool at {self.directory} is closed")
        if self._fd is None:
            raise SpoolError(f"the spool at {self.directory} is open read-only")
        return self._fd

    def _roll(self) -> int:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._segment += 1
        self._size = 0
        self._fd = self._open_segment(self._segment)
        return self._fd

    def _cut_back(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            # Cannot even truncate: the next open's tail repair (or a reader's whole-line cut)
            # still never exposes a partial line; log so the operator knows.
            log.exception("could not cut spool segment %d back to %d bytes", self._segment, size)

    def _write_error(self, exc: OSError, nbytes: int) -> SpoolWriteError:
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            free = -1
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return SpoolFullError(
                f"spool disk full at {self.directory}: {free} bytes free, a batch of {nbytes} "
                "bytes did not fit; readings are not acknowledged and will be redelivered"
            )
        return SpoolWriteError(
            f"cannot write {nbytes} bytes to the spool at {self.directory} "
            f"({exc.strerror or exc}); readings are not acknowledged and will be redelivered"
        )

    def position(self) -> SpoolPosition:
        """The end of the spool: where the next append starts."""
        with self._lock:
            if not self.readonly:
                return SpoolPosition(self._segment, self._size)
            segments = self._scan()
            if not segments:
                return SPOOL_START
            return SpoolPosition(segments[-1].number, segments[-1].size)

    # -- readers --------------------------------------------------------------------------

    def read(self, start: SpoolPosition, max_bytes: int) -> tuple[bytes, SpoolPosition]:
        """Whole lines from ``start``: up to ``max_bytes`` (at least one line if one is there).

        Crosses segment boundaries. Returns the data and the position right after it (which
        is ``start``, or the start of a later segment, when there is nothing new to read).
        """
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        with self._lock:
            segments = [s for s in self._scan() if s.number >= start.segment]
            if self._fd is not None:
                # Our own writer knows the fsync'd size; do not read a write in progress.
                segments = [
                    SegmentInfo(s.number, s.path, self._size) if s.number == self._segment else s
                    for s in segments
                ]
        pos = start
        out: list[bytes] = []
        total = 0
        for seg in segments:
            offset = pos.offset if seg.number == pos.segment else 0
            if seg.number != pos.segment:
                pos = SpoolPosition(seg.number, 0)
            if offset >= seg.size:
                continue
            budget = max_bytes - total
            data = _read_lines(seg.path, offset, seg.size, budget, need_one=not out)
            if data:
                out.append(data)
                total += len(data)
                pos = SpoolPosition(seg.number, offset + len(data))
            if total >= max_bytes or offset + len(data) < seg.size:
                break  # budget spent, or the rest of this segment is a line in progress
        return b"".join(out), pos

    def segments(self) -> list[SegmentInfo]:
        """The segment files, oldest first."""
        with self._lock:
            return self._scan()

    def sha256(self, segment: int) -> str:
        """Hex SHA-256 of one segment file (for run records and integrity checks)."""
        h = hashlib.sha256()
        with (self.directory / segment_name(segment)).open("rb") as f:
            for chunk in iter(lambda: f.read(MiB), b""):
                h.update(chunk)
        return h.hexdigest()

    def _scan(self) -> list[SegmentInfo]:
        found: list[SegmentInfo] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        for entry in entries:
            m = _SEGMENT_RE.match(entry.name)
            if m is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                found.append(SegmentInfo(int(m.group(1)), Path(entry.path), entry.stat().st_size))
        found.sort(key=lambda s: s.number)
        return found

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the segment and release the writer lock (idempotent)."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_lines(path: Path, offset: int, size: int, budget: int, *, need_one: bool) -> bytes:
    """Whole lines of ``path`` in ``[offset, size)``: at most ``budget`` bytes, or one longer line
    when ``need_one``."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(min(budget, size - offset))
        cut = data.rfind(b"\n")
        if cut >= 0:
            return data[: cut + 1]
        if not need_one:
            return b""
        # One line longer than the budget: read on to its end so the reader always progresses.
        parts = [data]
        read = offset + len(data)
        while read < size:
            chunk = f.read(min(_READ_CHUNK, size - read))
            if not chunk:
                break
            read += len(chunk)
            nl = chunk.find(b"\n")
            if nl >= 0:
                parts.append(chunk[: nl + 1])
                return b"".join(parts)
            parts.append(chunk)
        return b""  # no whole line yet (a write in progress by another process)


class OffsetStore:
    """Committed spool position of each sink, one small JSON file per sink, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not _SINK_NAME_RE.match(name):
            raise ValueError(
                f"sink name {name!r} must be letters, digits, '.', '_' or '-' "
                "(it names a file in the spool)"
            )
        return self.directory / f"{name}.json"

    def load(self, name: str) -> SpoolPosition:
        """The committed position of sink ``name``; the start of the spool if none."""
        path = self._path(name)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return SPOOL_START
        except (OSError, ValueError) as exc:
            raise SpoolError(f"cannot read the offset of sink {name!r} at {path}: {exc}") from exc
        return SpoolPosition(int(raw["segment"]), int(raw["offset"]))

    def commit(self, name: str, pos: SpoolPosition) -> None:
        """Record ``pos`` for sink ``name``: temp file, fsync, rename, fsync the directory."""
        path = self._path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        # A temp name of our own: two stores committing at once must not share one temp file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        body = json.dumps({"segment": pos.segment, "offset": pos.offset}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
