"""Observations: what a trial sees besides readings, as typed immutable records.

Readings (``labctl.readings``) are the hot path and reach evaluators through ``Evaluator.add``.
Everything else a trial observes — command outcomes, presence changes, frames the controller
presented (and what it measured on them), detections a device reported, the measured windows —
reaches evaluators that implement ``observe`` (see
``labctl.evaluators.base.ObservingEvaluator``) as one of the records below. Evaluators that
implement ``observe`` also receive every reading of a measured window as a
:class:`ReadingObserved` (with session, seq and arrival time, which ``add`` does not carry)
*instead of* ``add`` calls.

Times: ``*_at`` fields are controller wall-clock epoch seconds; ``ts`` fields are the device's
clock (accelerated on a simulated rig).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CommandStatus = Literal["succeeded", "failed", "rejected", "timeout"]


@dataclass(frozen=True, slots=True)
class ReadingObserved:
    """One reading, with what availability and latency need."""

    subject: str
    stream: str
    session: str
    seq: int
    ts: float
    received_at: float
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PresenceObserved:
    """A device's presence changed (``online``, ``offline``, ``lost``)."""

    subject: str
    state: str
    session: str
    at: float
    """Controller wall clock when the change arrived."""
    ts: float | None = None
    """The device clock in the state payload, when it sent one."""


@dataclass(frozen=True, slots=True)
class CommandObserved:
    """How one command a trial sent ended."""

    subject: str
    command_id: str
    op: str
    params: Mapping[str, Any]
    status: CommandStatus
    accepted: bool
    published_at: float
    finished_at: float
    """Final response arrival, or the deadline for a timeout."""
    deadline_s: float
    expect: str = "succeeded"
    """What the trial step expected (e.g. a step that checks a rejection expects ``rejected``)."""
    error: str | None = None
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DetectedObject:
    """One object a device reported in a frame. Already validated at the edge: finite numbers,
    ``w, h > 0``; the evaluator still decides what lies outside the image."""

    bbox: tuple[float, float, float, float]
    """x, y, width, height in pixels (COCO convention)."""
    label: str
    score: float
    ref: str | None = None
    """Register id the device identified, if any."""


@dataclass(frozen=True, slots=True)
class FramePresented:
    """The controller presented a frame of a dataset to the devices under test."""

    frame: str
    """The frame id sent to devices (unique within the run)."""
    image_id: int
    """The ground truth image id (COCO ``images[].id``)."""
    presented_at: float
    deadline_s: float
    """Detections arriving later than ``presented_at + deadline_s`` are late."""


@dataclass(frozen=True, slots=True)
class FrameConditions:
    """Conditions the controller measured on a presented frame (e.g. a live camera frame's
    ``brightness``, ``contrast``, ``sharpness``); they join the image's conditions in the
    ground truth, so the breakdown can bin by them."""

    image_id: int
    """The ground truth image id the frame showed (as in :class:`FramePresented`)."""
    conditions: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class DetectionsObserved:
    """A device's detections for one frame."""

    subject: str
    frame: str
    seq: int
    ts: float
    received_at: float
    objects: tuple[DetectedObject, ...]


@dataclass(frozen=True, slots=True)
class WindowObserved:
    """A measured window began or ended (device time ``ts``, controller wall clock ``at``)."""

    edge: Literal["start", "end"]
    phase: str
    ts: float
    at: float
    conditions: Mapping[str, float] = field(default_factory=dict)
    """Conditions the trial set for this window (e.g. ``{"loss_pct": 5}``)."""


Observation = (
    ReadingObserved
    | PresenceObserved
    | CommandObserved
    | FramePresented
    | FrameConditions
    | DetectionsObserved
    | WindowObserved
)
