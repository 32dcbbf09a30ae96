"""The run record: one immutable account of a trial run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from labctl.evaluators.result import EvaluationResult

RunStatus = Literal["running", "passed", "failed", "aborted", "faulted", "error"]
FINAL_STATUSES: tuple[RunStatus, ...] = ("passed", "failed", "aborted", "faulted", "error")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceInRun(_Frozen):
    """A device as it took part: identity and firmware from its manifest."""

    key: str
    vendor: str
    device: str
    role: str
    model: str
    serial: str
    hw_version: str
    sw_version: str
    manifest_version: int
    session: str
    readings: int = 0
    rejected: int = 0
    interval_s: float | None = None
    """Nominal sampling interval of the judged channel (from the manifest's rate), if known."""


class SpecRef(_Frozen):
    """Which spec ran."""

    path: str
    sha256: str


class SpoolRange(_Frozen):
    """Where the run's raw data is in the spool."""

    directory: str
    start: tuple[int, int]
    end: tuple[int, int]
    """(segment, byte offset), end exclusive."""
    segments: dict[str, str] = Field(default_factory=dict)
    """Segment file name → sha256 at the end of the run."""


class SinkOutcome(_Frozen):
    """How far a TSDB sink got by the end of the run."""

    name: str
    points_written: int
    caught_up: bool
    last_error: str | None = None


class Counters(_Frozen):
    """Message and reading totals."""

    readings: int = 0
    readings_evaluated: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)


class RunRecord(_Frozen):
    """Everything about a run that a report or a re-score needs."""

    id: str
    trial: str
    title: str
    kind: str
    rig: str
    spec: SpecRef
    status: RunStatus
    exit_code: int
    started_at: float
    ended_at: float
    device_time: tuple[float, float] | None = None
    """The measured window in device time (epoch seconds)."""
    windows: list[tuple[float, float]] | None = None
    """The measured steps in device time ([start, end) each); None in older records, where
    ``device_time`` is the one window."""
    devices: list[DeviceInRun] = Field(default_factory=list)
    evaluation: EvaluationResult | None = None
    counters: Counters = Field(default_factory=Counters)
    spool: SpoolRange | None = None
    sinks: list[SinkOutcome] = Field(default_factory=list)
    message: str = ""
    """Why a run was aborted or faulted, in words."""
    labctl_version: str
    data_dir: str
    rescored_from: str | None = None
    """For a re-score: the recorded run whose spooled data this verdict re-evaluates."""
