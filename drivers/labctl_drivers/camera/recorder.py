"""Evidence: the frames a trial saw, on disk, each tied to the trial timeline.

A recording directory holds either a video (``evidence.avi`` with MJPG, or ``evidence.mp4``
with mp4v) or a JPEG sequence (``frame_000123.jpg``, numbered by source frame index), and
``index.jsonl``: one JSON line per recorded frame with its source index, monotonic and wall
timestamps, brightness, contrast, sharpness, size, and where it is (file, and the frame
position inside a video).

Encoding and writing run on the recorder's own thread; :meth:`EvidenceRecorder.write` only
waits when ``queue_frames`` frames are already waiting (back-pressure, never a silent loss).
Files appear under their final names only when complete: JPEGs are renamed into place one by
one, the video and the index when the recorder closes (after an fsync). A recording that
failed leaves its ``.part`` files for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

import cv2
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl_drivers.camera.errors import EvidenceError
from labctl_drivers.camera.frame import Frame

log = logging.getLogger(__name__)

INDEX_NAME = "index.jsonl"
VIDEO_EXTENSIONS = {"MJPG": ".avi", "mp4v": ".mp4"}


class EvidenceConfig(BaseModel):
    """How to record evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path
    """A new (or empty) directory for this recording."""
    format: Literal["jpeg", "video"] = "jpeg"
    codec: Literal["MJPG", "mp4v"] = "MJPG"
    """Video codec: MJPG in ``.avi`` (every frame a JPEG, robust) or mp4v in ``.mp4``
    (smaller)."""
    fps: float = Field(default=25.0, gt=0, le=1000)
    """Nominal frame rate written into a video (the index holds the true capture times)."""
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    """JPEG sequence quality."""
    queue_frames: int = Field(default=16, ge=1, le=4096)
    """Frames waiting to be written at most before :meth:`EvidenceRecorder.write` waits."""
    name: str = Field(default="evidence", pattern=r"^[A-Za-z0-9_.-]+$")
    """Video file name without extension."""


class EvidenceEntry(BaseModel):
    """One line of ``index.jsonl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    """Position in the recording, from 0."""
    index: int
    """Source frame index (:attr:`Frame.index`)."""
    mono_ts: float
    wall_ts: float
    brightness: float
    contrast: float
    sharpness: float
    width: int
    height: int
    file: str
    """JPEG file name, or the video file name."""
    position: int | None = None
    """Frame position inside the video (None for a JPEG sequence)."""
    name: str | None = None
    """Source image file name, for image folders."""


@dataclass(frozen=True, slots=True)
class EvidenceSummary:
    """What a closed recorder left on disk."""

    directory: Path
    index: Path
    video: Path | None
    frames: int


def read_evidence_index(path: Path) -> list[EvidenceEntry]:
    """The entries of a recording's index (``path``: the directory or its ``index.jsonl``)."""
    if path.is_dir():
        path = path / INDEX_NAME
    entries = []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            try:
                entries.append(EvidenceEntry.model_validate(orjson.loads(line)))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                raise EvidenceError(f"{path}, line {n}: {exc}") from None
    return entries


_Close = None  # the writer thread's stop item


class EvidenceRecorder:
    """Records frames as a video or a JPEG sequence plus an index, off the event loop.

    ::

        async with EvidenceRecorder(run_dir / "camera-1", format="jpeg") as rec:
            async for frame in cam.frames():
                await rec.write(frame)
        rec.summary  # EvidenceSummary
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        format: Literal["jpeg", "video"] = "jpeg",
        codec: Literal["MJPG", "mp4v"] = "MJPG",
        fps: float = 25.0,
        jpeg_quality: int = 90,
        queue_frames: int = 16,
        name: str = "evidence",
    ) -> None:
        try:
            self.config = EvidenceConfig(
                directory=Path(directory),
                format=format,
                codec=codec,
                fps=fps,
                jpeg_quality=jpeg_quality,
                queue_frames=queue_frames,
                name=name,
            )
        except ValidationError as exc:
            raise EvidenceError(f"bad evidence options: {exc}") from None
        cfg = self.config
        self.index_path = cfg.directory / INDEX_NAME
        ext = VIDEO_EXTENSIONS[cfg.codec]
        self.video_path = cfg.directory / f"{cfg.name}{ext}" if cfg.format == "video" else None
        self._video_part = cfg.directory / f".{cfg.name}.part{ext}"
        self._index_part = cfg.directory / f".{INDEX_NAME}.part"
        self._queue: queue.SimpleQueue[Frame | None] = queue.SimpleQueue()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._index: IO[bytes] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._names: set[str] = set()
        self._error: str | None = None
        self._written = 0
        self._closing = False
        self.summary: EvidenceSummary | None = None

    @property
    def frames_written(self) -> int:
        """Frames on disk so far."""
        return self._written

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:  # do not hide the error that ended the recording
            await self.close()
        except EvidenceError as err:
            log.warning("%s", err)

    async def open(self) -> None:
        """Create the directory and the index; EvidenceError if it already holds a recording."""
        if self._thread is not None:
            raise EvidenceError(f"recorder for {self.config.directory} is already open")
        await asyncio.to_thread(self._prepare)
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.config.queue_frames)
        self._thread = threading.Thread(
            target=self._run, name=f"evidence {self.config.directory.name}", daemon=True
        )
        self._thread.start()

    async def write(self, frame: Frame) -> None:
        """Queue ``frame`` for writing; waits only while the queue is full."""
        if self._slots is None or self._closing:
            raise EvidenceError(f"recorder for {self.config.directory} is not open")
        if self._error is not None:
            raise EvidenceError(self._error)
        await self._slots.acquire()
        self._queue.put(frame)

    async def close(self) -> EvidenceSummary:
        """Write what is queued, flush and fsync, move files to their final names."""
        if self.summary is not None:
            return self.summary
        if self._thread is None:
            raise EvidenceError(f"recorder for {self.config.directory} was never opened")
        self._closing = True
        self._queue.put(_Close)
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise EvidenceError(self._error)
        self.summary = EvidenceSummary(
            directory=self.config.directory,
            index=self.index_path,
            video=self.video_path if self._written else None,
            frames=self._written,
        )
        return self.summary

    # -- writer thread -------------------------------------------------------------------

    def _prepare(self) -> None:
        d = self.config.directory
        try:
            d.mkdir(parents=True, exist_ok=True)
            if self.index_path.exists():
                raise EvidenceError(
                    f"{d} already holds a recording ({INDEX_NAME}); record into a new directory"
                )
            self._index = self._index_part.open("wb")
        except OSError as exc:
            raise EvidenceError(f"cannot record into {d}: {exc.strerror or exc}") from None

    def _run(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                break
            if self._error is None:
                try:
                    self._write(frame)
                except EvidenceError as exc:
                    self._error = str(exc)
                except (OSError, cv2.error) as exc:
                    self._error = f"cannot record frame {frame.index}: {exc}"
            self._free_slot()
        try:
            self._finish()
        except OSError as exc:
            self._error = self._error or f"cannot finish the recording: {exc}"

    def _free_slot(self) -> None:
        assert self._loop is not None and self._slots is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            self._loop.call_soon_threadsafe(self._slots.release)

    def _write(self, frame: Frame) -> None:
        cfg = self.config
        position: int | None = None
        if cfg.format == "jpeg":
            file = f"frame_{frame.index:06d}.jpg"
            if file in self._names:
                raise EvidenceError(f"frame {frame.index} recorded twice into {cfg.directory}")
            ok, buf = cv2.imencode(
                ".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
            )
            if not ok:
                raise EvidenceError(f"cannot encode frame {frame.index} as JPEG")
            part = cfg.directory / f".{file}.part"
            part.write_bytes(buf.tobytes())
            os.replace(part, cfg.directory / file)
            self._names.add(file)
        else:
            self._video_frame(frame)
            assert self.video_path is not None
            file, position = self.video_path.name, self._written
        m = frame.measures
        entry = {
            "seq": self._written,
            "index": frame.index,
            "mono_ts": frame.mono_ts,
            "wall_ts": frame.wall_ts,
            "brightness": m.brightness,
            "contrast": m.contrast,
            "sharpness": m.sharpness,
            "width": frame.width,
            "height": frame.height,
            "file": file,
            "position": position,
            "name": frame.name,
        }
        assert self._index is not None
        self._index.write(orjson.dumps(entry) + b"\n")
        self._index.flush()  # a crash leaves a usable .part index
        self._written += 1

    def _video_frame(self, frame: Frame) -> None:
        size = (frame.width, frame.height)
        if self._writer is None:
            fourcc = cv2.VideoWriter.fourcc(*self.config.codec)
            writer = cv2.VideoWriter(str(self._video_part), fourcc, self.config.fps, size)
            if not writer.isOpened():
                raise EvidenceError(
                    f"cannot write a {self.config.codec} video to {self._video_part}"
                )
            self._writer, self._size = writer, size
        elif size != self._size:
            w, h = self._size or (0, 0)
            raise EvidenceError(
                f"frame {frame.index} is {size[0]}×{size[1]} but the video is {w}×{h}; "
                "record sources of mixed sizes as a JPEG sequence"
            )
        self._writer.write(frame.image)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._index is not None:
            self._index.flush()
            os.fsync(self._index.fileno())
            self._index.close()
            self._index = None
        if self._error is not None:
            return  # keep the .part files for inspection
        if self.video_path is not None and self._written:
            _fsync_file(self._video_part)
            os.replace(self._video_part, self.video_path)
        os.replace(self._index_part, self.index_path)
        _fsync_dir(self.config.directory)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'd
        _fsync_file(path)
