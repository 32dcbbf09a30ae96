"""What a camera delivers: frames with their times and measures, what it is, how it ended."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labctl_drivers.camera.measures import FrameMeasures
from labctl_drivers.camera.source import SourceKind
from labctl_drivers.camera.stats import CameraStats


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame."""

    index: int
    """Source frame number: position in a video file or image folder (an unreadable image
    leaves a gap), capture sequence number (from 0) of a live source."""
    mono_ts: float
    """``time.monotonic()`` when the frame was captured (the trial timeline)."""
    wall_ts: float
    """``time.time()`` at the same moment (epoch seconds)."""
    image: NDArray[np.uint8]
    """The image, BGR, height × width × 3."""
    measures: FrameMeasures
    """Brightness, contrast, sharpness of the full image."""
    name: str | None = None
    """The image file's name, for image folders."""

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """What an opened camera turned out to be."""

    label: str
    kind: SourceKind
    width: int | None
    """Frame size the backend reports (None when it does not know before the first frame)."""
    height: int | None
    fps: float | None
    """The source's nominal frame rate, when it declares one."""
    frame_count: int | None
    """Frames in a video file or image files in a folder; None for live sources."""
    backend: str
    """``FFMPEG``, ``V4L2``, … or ``imread`` for folders."""


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """A file or folder was read to its end; the frame iterator finished cleanly."""

    reason: str
    stats: CameraStats
