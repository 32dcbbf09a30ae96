"""Pydantic models of every ``labctl/1`` payload.

These are the edge: every inbound payload is parsed by one of these models before anything else
sees it — except telemetry, which the edge decodes into the msgspec structs of
:mod:`labctl.protocol.inbound`, held to these models by a unit test. Models forbid unknown
fields where a typo would silently lose meaning, reject NaN and Infinity, and bound every
collection so a hostile payload cannot make the controller allocate without limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

SCHEMA = "labctl/1"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_TELEMETRY_BYTES = 256 * 1024
MAX_BATCH_SAMPLES = 10_000
MAX_VALUES_PER_SAMPLE = 64
TS_MIN = 946_684_800.0  # 2000-01-01: older device clocks are unset, not historical
TS_MAX = 4_102_444_800.0  # 2100-01-01

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,62}$")]
Session = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
ShortText = Annotated[str, StringConstraints(max_length=128)]
EpochSeconds = Annotated[float, Field(ge=TS_MIN, le=TS_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


class DeviceIdentity(_Strict):
    """Who a device says it is. ``vendor`` and ``id`` must equal its topic."""

    vendor: Name
    id: Name
    model: ShortText
    serial: ShortText
    hw_version: ShortText = ""
    sw_version: ShortText = ""


class ChannelSpec(_Strict):
    """One measured quantity a device offers."""

    name: ChannelName
    unit: ShortText
    type: Literal["float", "int", "bool"] = "float"
    rate_hz: float = Field(gt=0, le=1000)


class CommandSpec(_Strict):
    """One operation a device accepts."""

    op: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    params_schema: dict[str, Any] = Field(default_factory=dict)
    timeout_ms: int = Field(default=5000, gt=0, le=3_600_000)


class Manifest(_Strict):
    """A device's self-description, retained on ``…/manifest``."""

    schema_: Literal["labctl/1"] = Field(alias="schema")
    version: int = Field(ge=1)
    session: Session
    device: DeviceIdentity
    channels: list[ChannelSpec] = Field(min_length=1, max_length=128)
    commands: list[CommandSpec] = Field(default_factory=list, max_length=128)

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, strict=True, populate_by_name=True
    )

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[ChannelSpec]) -> list[ChannelSpec]:
        names = [c.name for c in channels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(duplicates)}")
        return channels

    def channel(self, name: str) -> ChannelSpec | None:
        """The declared channel called ``name``, if any."""
        return next((c for c in self.channels if c.name == name), None)


class State(_Strict):
    """Presence, retained on ``…/state``; the Last Will carries ``lost``."""

    state: Literal["online", "offline", "lost"]
    session: Session
    ts: EpochSeconds | None = None


# Keys are not pattern-checked here: the driver checks each against the manifest's declared
# channels, which is stricter and avoids a regex per value on the hot path.
Values = Annotated[dict[str, float], Field(min_length=1, max_length=MAX_VALUES_PER_SAMPLE)]


class Sample(_Strict):
    """One timestamped set of channel values."""

    seq: int = Field(ge=0, lt=2**63)
    ts: EpochSeconds
    v: Values


class Telemetry(_Strict):
    """One sample on ``…/telemetry/{stream}``."""

    session: Session
    seq: int = Field(ge=0, lt=2**63)
    ts: EpochSeconds
    v: Values

    def samples(self) -> list[Sample]:
        """The message as a one-sample batch."""
        return [Sample(seq=self.seq, ts=self.ts, v=self.v)]


class TelemetryBatch(_Strict):
    """Store-and-forward: many samples in one message."""

    session: Session
    samples: list[Sample] = Field(min_length=1, max_length=MAX_BATCH_SAMPLES)


class ErrorReport(_Strict):
    """What the lab publishes on ``lab/v1/_err/{vendor}/{device}``."""

    topic: str
    reason: str
    detail: str
    ts: float


CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""Command ids travel in the topic, so they may not contain '/', '+' or '#'."""


class CommandRequest(_Strict):
    """What the lab sends on ``…/cmd/{id}/req``. ``deadline`` is epoch seconds (lab clock)."""

    id: CommandId
    op: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    params: dict[str, Any] = Field(default_factory=dict)
    deadline: float


class CommandError(_Strict):
    """Why a command failed or was rejected."""

    code: Annotated[str, StringConstraints(max_length=64)]
    message: Annotated[str, StringConstraints(max_length=1024)]


class CommandResponse(_Strict):
    """What a device answers on ``…/cmd/{id}/res``."""

    id: CommandId
    status: Literal["accepted", "succeeded", "failed", "rejected"]
    result: dict[str, Any] | None = None
    error: CommandError | None = None

    @property
    def final(self) -> bool:
        """True for the last response a command gets."""
        return self.status != "accepted"


MAX_EVENT_BYTES = 256 * 1024
MAX_OBJECTS_PER_FRAME = 1000
FrameId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
"""Frame ids travel in stimulus topics, so they may not contain '/', '+' or '#'."""
PixelBox = Annotated[
    tuple[float, float, float, float],
    Field(description="x, y, width, height in pixels (COCO convention)"),
]


class DetectedObject(_Strict):
    """One object in a frame, as a device reports it."""

    bbox: PixelBox
    label: ShortText
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    ref: ShortText | None = None
    """Register id the device identified the object as, if it identifies."""

    @field_validator("bbox")
    @classmethod
    def _positive_size(
        cls, bbox: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(f"bbox width and height must be > 0, got {list(bbox)}")
        return bbox


class Detections(_Strict):
    """What a device publishes on ``…/events/detections`` for one presented frame."""

    seq: int = Field(ge=0, lt=2**63)
    ts: EpochSeconds
    frame: FrameId
    objects: list[DetectedObject] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FRAME)


