"""What an AI box is (identity, variant) and how it behaves beyond its hardware (queue, faults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from labctl_sim.aibox.features import Variant

LABEL = "signboard"


@dataclass(frozen=True, slots=True)
class BoxSpec:
    """One vendor's AI box on the rig."""

    vendor: str
    id: str
    model: str
    variant: Variant
    serial: str
    hw_version: str = "1.0"
    sw_version: str = "1.0.0"
    rate_hz: float = 5.0
    """Frames per second the vendor declares the box handles (the ``detections`` channel)."""

    @property
    def key(self) -> str:
        """``vendor/id``."""
        return f"{self.vendor}/{self.id}"


def signsight_s1(device: str = "signsight-01") -> BoxSpec:
    """VisionX SignSight Edge S1: the fast variant (ORB on a downscaled frame)."""
    return BoxSpec(vendor="visionx", id=device, model="SignSight Edge S1", variant="fast",
                   serial="VX-S1-000731", hw_version="S1-rev2", sw_version="2.4.1", rate_hz=10.0)


def urbaneye_pro(device: str = "urbaneye-01") -> BoxSpec:
    """CityVision UrbanEye Pro: the robust variant (CLAHE, full resolution, more keypoints)."""
    return BoxSpec(vendor="cityvision", id=device, model="UrbanEye Pro", variant="robust",
                   serial="CV-UEP-20417", hw_version="P3", sw_version="5.1.0", rate_hz=5.0)


def default_boxes() -> list[BoxSpec]:
    """The two vendors' boxes of the signboard-recognition showcase."""
    return [signsight_s1(), urbaneye_pro()]


@dataclass(frozen=True, slots=True)
class BoxOptions:
    """Queueing, reporting and injectable faults."""

    queue_size: int = 8
    """Frames waiting for the detector; when full the oldest is dropped (and counted)."""
    extra_delay_s: float = 0.0
    """Fault: added to every frame's processing time, so detections arrive late."""
    misbehave: bool = False
    """Fault: also report detections for frames never presented (``ghost-…``) and one box
    outside the image in every frame."""
    clock_offset_s: float = 0.0
    """Fault: the device clock's error; ``ts`` in payloads is wall clock plus this."""
    status_interval_s: float = 1.0
    """Period of the ``status`` telemetry (fps, queue, dropped)."""
    max_frame_bytes: int = 16 * 1024 * 1024
    keepalive_s: int = 10
    backoff_min_s: float = 0.1
    backoff_max_s: float = 2.0
    publish_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")
        if self.extra_delay_s < 0:
            raise ValueError(f"extra_delay_s must not be negative, got {self.extra_delay_s}")
        if not 0.01 <= self.status_interval_s <= 3600:
            raise ValueError(f"status_interval_s must be 0.01…3600 s, got {self.status_interval_s}")


@dataclass(slots=True)
class BoxStats:
    """What happened to the frames a box received."""

    received: int = 0
    processed: int = 0
    published: int = 0
    dropped: int = 0
    """Frames pushed out of a full queue before the detector saw them."""
    undecodable: int = 0
    """Payloads that were not an image (garbage, empty, too large): ignored."""
    bad_topic: int = 0
    """Stimuli with an invalid frame id, or retained (stale) ones: ignored."""
    connects: int = 0
    busy_s: float = 0.0
    """Seconds spent decoding and detecting."""

    def as_dict(self) -> dict[str, object]:
        """The counters, for a stats file."""
        return asdict(self)
