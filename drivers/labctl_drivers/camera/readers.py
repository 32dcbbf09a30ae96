"""Blocking readers, one per source kind, used only on a camera's capture thread.

``open_reader`` may block (OpenCV's FFmpeg backend blocks in open until the source answers
or its open timeout fires); ``Reader.read`` blocks until a frame is there. Both raise
:class:`CameraError` in words when the source cannot be used at all.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from labctl_drivers.camera.errors import CameraError
from labctl_drivers.camera.frame import CameraInfo
from labctl_drivers.camera.source import CameraSource

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
     ".ppm", ".pgm", ".pbm", ".pnm"}
)  # fmt: skip
"""Files an image folder delivers (cv2.imread formats); other files are ignored."""

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "rtmps": 443}


class ReadFailed(Exception):
    """One read gave no frame (counted as a read error; the capture decides what follows)."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A frame as read, before measures."""

    index: int
    mono_ts: float
    wall_ts: float
    image: NDArray[np.uint8]
    name: str | None = None


class Reader(Protocol):
    """An opened source."""

    info: CameraInfo
    live: bool
    """Live sources fail after a read timeout; files and folders just end."""

    def read(self) -> RawFrame | None:
        """The next frame, None at the end of a file or folder; ReadFailed for a failed read."""
        ...

    def release(self) -> None:
        """Let go of the device, stream or file (idempotent)."""
        ...


def open_reader(source: CameraSource) -> Reader:
    """Open ``source`` (blocking, bounded by its open timeout where the backend allows)."""
    if source.kind == "folder":
        return FolderReader.open(source)
    return VideoReader.open(source)


def _bgr(image: MatLike) -> NDArray[np.uint8]:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:  # 16-bit sources: scale to 8 bits like cv2.imread does
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    return np.asarray(image, dtype=np.uint8)


class VideoReader:
    """``cv2.VideoCapture`` over a USB index, a stream URL or a video file."""

    def __init__(self, source: CameraSource, cap: cv2.VideoCapture, info: CameraInfo) -> None:
        self.source = source
        self.info = info
        self.live = source.kind in ("usb", "url")
        self._cap: cv2.VideoCapture | None = cap
        self._next = 0
        # A URL may be a finite clip (http://…/clip.mp4): it ends when its frames are read.
        self._finite = source.kind == "file" or (info.frame_count or 0) > 0

    @classmethod
    def open(cls, source: CameraSource) -> VideoReader:
        """Open the capture; CameraError in words when it does not open."""
        t0 = time.monotonic()
        kind, label = source.kind, source.label
        if kind == "file":
            path = Path(str(source.source)).expanduser()
            if not path.exists():
                raise CameraError(f"cannot open {label}: no such file")
            if not path.is_file():
                raise CameraError(f"cannot open {label}: not a regular file")
            if not os.access(path, os.R_OK):
                raise CameraError(f"cannot open {label}: no permission to read it")
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        elif kind == "url":
            # The FFmpeg backend blocks in open/read; these make it give up on its own.
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(source.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(source.read_timeout_s * 1000),
            ]  # fmt: skip
            cap = cv2.VideoCapture(str(source.source), cv2.CAP_FFMPEG, params)
        else:
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(int(source.source), api)
        if not cap.isOpened():
            cap.release()
            elapsed = time.monotonic() - t0
            raise CameraError(f"cannot open {label}: {_why_not(source, elapsed)}")
        if kind == "usb":
            _request_device_settings(cap, source)
        return cls(source, cap, _info(source, cap))

    def read(self) -> RawFrame | None:
        """The next frame (the time is taken when ``grab`` returns, before decoding)."""
        cap = self._cap
        if cap is None:
            return None
        ok = cap.grab()
        mono, wall = time.monotonic(), time.time()
        if not ok:
            if self._finite and (self.source.kind == "file" or self._past_end()):
                return None
            raise ReadFailed("the source returned no frame")
        index = self._next
        self._next += 1
        ok, image = cap.retrieve()
        if not ok or image is None:
            raise ReadFailed(f"frame {index} could not be decoded")
        return RawFrame(index, mono, wall, _bgr(image))

    def _past_end(self) -> bool:
        return self._next >= (self.info.frame_count or 0)

    def release(self) -> None:
        """Release the capture."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _request_device_settings(cap: cv2.VideoCapture, source: CameraSource) -> None:
    # Requests only: a device picks the nearest mode it has; CameraInfo reports what it chose.
    if source.width is not None:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, source.width)
    if source.height is not None:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, source.height)
    if source.fps is not None:
        cap.set(cv2.CAP_PROP_FPS, source.fps)
    cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(source.read_timeout_s * 1000))


def _info(source: CameraSource, cap: cv2.VideoCapture) -> CameraInfo:
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return CameraInfo(
        label=source.label,
        kind=source.kind,
        width=w if w > 0 else None,
        height=h if h > 0 else None,
        fps=fps if 0 < fps < 10_000 else None,
        # Live streams report 0 or a huge negative count.
        frame_count=int(count) if 0 < count < 2**31 and source.kind != "usb" else None,
        backend=cap.getBackendName(),
    )


def _why_not(source: CameraSource, elapsed: float) -> str:
    if source.kind == "file":
        return "not a video OpenCV's FFmpeg backend can decode"
    if isinstance(source.source, int):
        return _why_not_usb(source.source)
    if elapsed >= 0.9 * source.open_timeout_s:
        return f"no answer within {source.open_timeout_s:g} s"
    return _why_not_url(source.source, source.open_timeout_s - elapsed)


def _why_not_usb(index: int) -> str:
    if not sys.platform.startswith("linux"):
        return "no camera at this index, or it is in use by another program"
    dev = Path(f"/dev/video{index}")
    if not dev.exists():
        present = sorted(str(p) for p in Path("/dev").glob("video*"))
        return f"no such device ({dev} does not exist; present: {', '.join(present) or 'none'})"
    if not os.access(dev, os.R_OK | os.W_OK):
        return f"no permission to use {dev} (is the user in the 'video' group?)"
    return f"{dev} exists but did not open (in use by another program, or not a capture device)"


def _why_not_url(url: str, time_left: float) -> str:
    # OpenCV only says "not opened"; a plain TCP connect tells refused, unresolvable, silent.
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return "the URL has an invalid port"
    if parts.hostname is None:
        return "the URL names no host"
    if port is None:
        return "OpenCV's FFmpeg backend could not open it"
    where = f"{parts.hostname}:{port}"
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(1.0, time_left)):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {where} (nothing listens there)"
    except socket.gaierror:
        return f"cannot resolve host {parts.hostname!r}"
    except TimeoutError:
        return f"no answer from {where}"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    return (
        f"{where} answered, but OpenCV's FFmpeg backend found no video stream there "
        "(wrong path, credentials or format?)"
    )


def natural_key(name: str) -> tuple[list[str | int], str]:
    """Sort key: digit runs compare as numbers (``frame_2`` before ``frame_10``)."""
    parts: list[str | int] = [
        int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)
    ]
    return parts, name


class FolderReader:
    """Image files of a folder, in natural name order, read with ``cv2.imread``.

    The file list is taken when the folder is opened. An image file that does not decode is
    counted as a read error and skipped; its position is not reused, so frame indices keep
    pointing at files.
    """

    live = False

    def __init__(self, source: CameraSource, files: list[Path]) -> None:
        self.source = source
        self.files = files
        self._next = 0
        self.info = CameraInfo(
            label=source.label,
            kind="folder",
            width=None,
            height=None,
            fps=source.fps,
            frame_count=len(files),
            backend="imread",
        )

    @classmethod
    def open(cls, source: CameraSource) -> FolderReader:
        """List the folder's image files; CameraError when there are none."""
        label = source.label
        path = Path(str(source.source)).expanduser()
        if not path.exists():
            raise CameraError(f"cannot open {label}: no such folder")
        if not path.is_dir():
            raise CameraError(f"cannot open {label}: not a folder")
        try:
            files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        except OSError as exc:
            raise CameraError(f"cannot open {label}: {exc.strerror or exc}") from exc
        files = sorted((p for p in files if p.is_file()), key=lambda p: natural_key(p.name))
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            raise CameraError(f"cannot open {label}: no image files in it (looked for {kinds})")
        return cls(source, files)

    def read(self) -> RawFrame | None:
        """The next image; ReadFailed (naming the file) for one that does not decode."""
        if self._next >= len(self.files):
            return None
        index = self._next
        self._next += 1
        path = self.files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        mono, wall = time.monotonic(), time.time()
        if image is None:
            raise ReadFailed(f"cannot read image {path.name}: not an image OpenCV can decode")
        return RawFrame(index, mono, wall, _bgr(image), path.name)

    def release(self) -> None:
        """Nothing is held between reads."""
        self._next = len(self.files)
