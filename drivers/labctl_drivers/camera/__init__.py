"""``camera``: frames from a USB camera, a stream URL, a video file or an image folder.

Every source kind looks the same to a trial: open it with a :class:`CameraSource`, iterate
:meth:`Camera.frames` on the event loop while a dedicated thread reads, decodes and measures
(brightness, contrast, sharpness) each frame, and record what was seen with
:class:`EvidenceRecorder`.

::

    async with Camera(CameraSource.parse("/data/street-scenes/")) as cam:
        async for frame in cam.frames():
            frame.index, frame.mono_ts, frame.measures.sharpness
"""

from labctl_drivers.camera.capture import Camera
from labctl_drivers.camera.driver import CameraDriver, FrameSource, camera_driver_registry
from labctl_drivers.camera.errors import CameraError, EvidenceError
from labctl_drivers.camera.frame import CameraInfo, EndOfStream, Frame
from labctl_drivers.camera.measures import FrameMeasures, measure
from labctl_drivers.camera.recorder import (
    EvidenceConfig,
    EvidenceEntry,
    EvidenceRecorder,
    EvidenceSummary,
    read_evidence_index,
)
from labctl_drivers.camera.source import CameraSource, SourceKind, parse_source, source_kind
from labctl_drivers.camera.stats import CameraStats

__all__ = [
    "Camera",
    "CameraDriver",
    "CameraError",
    "CameraInfo",
    "CameraSource",
    "CameraStats",
    "EndOfStream",
    "EvidenceConfig",
    "EvidenceEntry",
    "EvidenceError",
    "EvidenceRecorder",
    "EvidenceSummary",
    "Frame",
    "FrameMeasures",
    "FrameSource",
    "SourceKind",
    "camera_driver_registry",
    "measure",
    "parse_source",
    "read_evidence_index",
    "source_kind",
]
