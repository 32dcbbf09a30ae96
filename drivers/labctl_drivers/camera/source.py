"""Where frames come from: one config for a USB index, a stream URL, a video file or an
image folder, so a trial does not care which one it reads.

The kind is decided from the ``source`` value: an int (or a string of digits) is a USB
camera index; ``scheme://…`` with a streaming scheme is a URL; a path ending in ``/`` or
naming an existing directory is an image folder; any other path is a video file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SourceKind = Literal["usb", "url", "file", "folder"]

STREAM_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"}
)
"""URL schemes handed to OpenCV's FFmpeg backend."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")  # two letters at least: not C:\


def source_kind(source: str | int) -> SourceKind:
    """The kind of ``source``; ValueError in words for a URL scheme OpenCV cannot read."""
    if isinstance(source, int):
        return "usb"
    m = _SCHEME.match(source)
    if m:
        scheme = m.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            raise ValueError(
                f"unsupported URL scheme {scheme!r} in {redact(source)!r} "
                f"(supported: {', '.join(sorted(STREAM_SCHEMES))})"
            )
        return "url"
    if source.endswith(("/", "\\")) or Path(source).expanduser().is_dir():
        return "folder"
    return "file"


def redact(source: str | int) -> str:
    """``source`` fit for logs and errors: a URL's password becomes ``***``."""
    if isinstance(source, int) or not _SCHEME.match(source):
        return str(source)
    parts = urlsplit(source)
    if parts.password is None:
        return source
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class CameraSource(BaseModel):
    """How to open one camera (rig config ``options`` of the ``camera`` driver)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | int
    """USB index (``0``), stream URL (``rtsp://…``, ``http://…``), video file, or image
    folder (a path ending in ``/`` or an existing directory)."""
    fps: float | None = Field(default=None, gt=0, le=10_000)
    """Files and folders: deliver at this rate, like a live camera (default: as fast as the
    consumer takes them). USB: the frame rate requested from the device. Not for URLs."""
    realtime: bool = False
    """Video files: deliver at the file's own frame rate."""
    width: int | None = Field(default=None, gt=0, le=16384)
    height: int | None = Field(default=None, gt=0, le=16384)
    """Capture size requested from the device (USB; other backends may ignore it). Images are
    never resampled in software: that would change the sharpness a trial measures."""
    open_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """Seconds to wait for the source to open before giving up with an error."""
    read_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """Seconds without a frame from a live source (after the pacing interval, for paced
    files) before the camera counts as stopped."""
    queue_frames: int = Field(default=4, ge=1, le=1024)
    """Frames waiting for the consumer at most."""
    overflow: Literal["drop-oldest", "block"] | None = None
    """What a full queue does: ``drop-oldest`` (count and drop the oldest frame, so a live
    camera never builds latency) or ``block`` (the reader waits: no frame lost). Default:
    ``block`` for unpaced files and folders, ``drop-oldest`` for everything live or paced."""

    @field_validator("source", mode="before")
    @classmethod
    def _index_from_digits(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, str) and not value.strip():
            raise ValueError("source is empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if isinstance(self.source, int) and self.source < 0:
            raise ValueError(f"USB camera index must be 0 or more, not {self.source}")
        kind = source_kind(self.source)
        if self.realtime and self.fps is not None:
            raise ValueError("give either fps or realtime, not both")
        if self.realtime and kind != "file":
            hint = "; give fps" if kind == "folder" else ""
            raise ValueError(f"realtime paces video files only (this source is a {kind}){hint}")
        if self.fps is not None and kind == "url":
            raise ValueError("fps paces files and folders; a stream delivers at its own rate")
        return self

    @classmethod
    def parse(cls, text: str, **options: Any) -> CameraSource:
        """The source written as ``text`` (``"0"``, ``"rtsp://…"``, ``"/v.mp4"``, ``"/dir/"``),
        with other fields from ``options``."""
        return cls.model_validate({**options, "source": text})

    @property
    def kind(self) -> SourceKind:
        """``usb``, ``url``, ``file`` or ``folder``."""
        return source_kind(self.source)

    @property
    def label(self) -> str:
        """The source for messages (URL password hidden)."""
        if isinstance(self.source, int):
            return f"camera {self.source}"
        return redact(self.source)

    @property
    def paced(self) -> bool:
        """Whether a file or folder is delivered at a set rate (like a live camera)."""
        return self.kind in ("file", "folder") and (self.fps is not None or self.realtime)

    @property
    def drops_oldest(self) -> bool:
        """The effective overflow policy (see :attr:`overflow`)."""
        if self.overflow is not None:
            return self.overflow == "drop-oldest"
        return self.kind in ("usb", "url") or self.paced


def parse_source(text: str, **options: Any) -> CameraSource:
    """``CameraSource.parse``: a source from its written form; ValidationError in words."""
    return CameraSource.parse(text, **options)
