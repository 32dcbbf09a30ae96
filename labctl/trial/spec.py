"""Trial specs: YAML validated by pydantic, with errors that name the file, line and field."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from labctl.trial.criteria import Criterion
from labctl.trial.durations import Duration


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DeviceSelector(_Spec):
    """Which rig devices fill a role in the trial."""

    role: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
    channel: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$")]
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=1)
    select: list[str] | None = None
    """Optional ``vendor/device`` patterns (shell-style) narrowing the role."""


class WaitStep(_Spec):
    """Let time pass (device time on a simulated rig, wall time otherwise)."""

    wait: Duration


class MeasureStep(_Spec):
    """Record and evaluate readings for a duration of device time."""

    measure: Duration


class CommandCall(_Spec):
    """One device operation, sent to every device of a role (``to``)."""

    op: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    params: dict[str, Any] = Field(default_factory=dict)
    to: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")] = "dut"
    """The trial role (a key of ``devices``' roles) whose devices get the command."""
    expect: Literal["succeeded", "failed", "rejected", "timeout"] = "succeeded"
    """What the device should answer; a step whose answer differs is recorded, not fatal."""
    timeout: Duration = 5.0
    """The deadline the device gets (wall time)."""
    settle: Duration | None = None
    """Wall time to wait after the answer before the next step (e.g. a luminaire ramping)."""


class CommandStep(_Spec):
    """Send a command and record how it ended."""

    command: CommandCall


class ReplayStimulus(_Spec):
    """Present the frames of a scene dataset to the devices under test, one at a time."""

    dataset: str | None = None
    """A ``labctl scenes make`` directory (relative to the spec); None: generate ``scenes``."""
    scenes: dict[str, Any] | None = None
    """Generator settings (count, seed, conditions) used when ``dataset`` is not given."""
    deadline: Duration = 2.0
    """How long after presentation a detection still counts (wall time)."""
    interval: Duration | None = None
    """Gap between frames; None: present the next frame when every device answered or the
    deadline passed."""
    limit: int | None = Field(default=None, ge=1)
    """Present only the first ``limit`` frames."""
    via: Literal["mqtt", "http"] = "mqtt"


class ReplayStep(_Spec):
    """Present recorded frames (``stimulus: {replay: …}``)."""

    replay: ReplayStimulus


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


class LiveStimulus(_Spec):
    """Present what a lab camera sees to the devices under test, frame by frame.

    Each camera frame is identified by its index (position in a video file or image folder,
    capture number from 0 of a USB camera or stream). A frame is presented only when the
    annotation file has ground truth for its index; the others are read, counted and passed
    over (see ``docs/live-trials.md``).
    """

    camera: str | StrictInt
    """USB index (``0``), stream URL (``rtsp://…``), video file or image folder (a path
    ending in ``/``); relative paths are taken from the spec's folder."""
    annotations: Annotated[str, StringConstraints(min_length=1)]
    """COCO ground truth (a file, or a folder holding ``annotations.json``), relative to the
    spec. ``images[].frame_index`` names each image's camera frame; without it an image's
    ``id`` is the frame index."""
    frames: int | None = Field(default=None, ge=1)
    """Present at most this many frames."""
    duration: Duration | None = None
    """Present frames for at most this long (wall time from the first frame)."""
    every: int = Field(default=1, ge=1)
    """Consider every k-th frame only (frame index divisible by ``every``)."""
    deadline: Duration = 2.0
    """How long after presentation a detection still counts (wall time)."""
    record: bool = False
    """Keep the presented frames as evidence: a JPEG sequence and ``index.jsonl`` (times,
    brightness, contrast, sharpness) in the run directory."""
    fps: float | None = Field(default=None, gt=0, le=1000)
    """Read a video file or image folder at this rate, like a camera (default: as fast as
    the presentation takes them, no frame dropped). A USB camera is asked for this rate."""

    @model_validator(mode="after")
    def _consistent(self) -> LiveStimulus:
        cam = self.camera
        if isinstance(cam, int) and cam < 0:
            raise ValueError(f"camera: a USB camera index is 0 or more, not {cam}")
        if isinstance(cam, str) and not cam.strip():
            raise ValueError("camera: give a USB index, a stream URL, a video file or a folder")
        if self.fps is not None and isinstance(cam, str) and _URL.match(cam):
            raise ValueError("fps paces video files and folders; a stream delivers at its own rate")
        return self


class LiveStep(_Spec):
    """Present camera frames (``stimulus: {live: …}``)."""

    live: LiveStimulus


class SetConditions(_Spec):
    """Set conditions of the rig for the following steps (e.g. network loss and delay)."""

    set: dict[str, float] = Field(min_length=1)


def _tag_by_key(tags: dict[str, str]) -> Callable[[Any], str | None]:
    """A discriminator choosing the model by which key a mapping has, so an error names the
    step the author meant instead of every alternative."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            for key, name in tags.items():
                if key in value:
                    return name
            return None
        return type(value).__name__ if type(value).__name__ in tags.values() else None

    return tag


class StimulusStep(_Spec):
    """Act on the devices' surroundings: present frames (recorded or from a camera) or set a
    condition."""

    stimulus: Annotated[
        Annotated[ReplayStep, Tag("ReplayStep")]
        | Annotated[LiveStep, Tag("LiveStep")]
        | Annotated[SetConditions, Tag("SetConditions")],
        Discriminator(
            _tag_by_key({"replay": "ReplayStep", "live": "LiveStep", "set": "SetConditions"}),
            custom_error_type="stimulus",
            custom_error_message=(
                "a stimulus is 'replay: {…}', 'live: {camera: …, annotations: …}' "
                "or 'set: {condition: value}'"
            ),
        ),
    ]


class PromptStep(_Spec):
    """Ask the operator to do something physical and confirm (skipped on a simulated rig,
    where the simulator does it)."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    timeout: Duration | None = None


Step = Annotated[
    Annotated[WaitStep, Tag("WaitStep")]
    | Annotated[MeasureStep, Tag("MeasureStep")]
    | Annotated[CommandStep, Tag("CommandStep")]
    | Annotated[StimulusStep, Tag("StimulusStep")]
    | Annotated[PromptStep, Tag("PromptStep")],
    Discriminator(
        _tag_by_key(
            {
                "wait": "WaitStep",
                "measure": "MeasureStep",
                "command": "CommandStep",
                "stimulus": "StimulusStep",
                "prompt": "PromptStep",
            }
        ),
        custom_error_type="step",
        custom_error_message="a step is one of wait, measure, command, stimulus or prompt",
    ),
]


class Phase(_Spec):
    """A named list of steps."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
    steps: list[Step] = Field(min_length=1)


class TrialSpec(_Spec):
    """A trial, as written in ``trials/*.yaml``."""

    trial: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: str
    kind: str
    """The evaluator, e.g. ``sensor-accuracy``."""
    devices: dict[str, DeviceSelector] = Field(min_length=1)
    duration: Duration | None = None
    """Length of the measurement in device time (required unless ``phases`` script it)."""
    averaging: Duration = 86400.0
    conditions: list[str] = Field(default_factory=list)
    bins: dict[str, list[float]] = Field(default_factory=dict)
    """Condition bin edges; defaults come from the evaluator (RH: 60, 75, 85 %)."""
    criteria: dict[str, Criterion] = Field(min_length=1)
    phases: list[Phase] | None = None
    """Optional script; by default the trial is one measure phase of ``duration``."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Settings of the evaluator (``kind``); the evaluator validates them."""
    speed: float | None = Field(default=None, gt=0)
    """Device seconds per wall second on a simulated rig; None: the rig's configured speed.
    Command trials run at 1 (real time); long availability trials accelerate."""
    preset: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")] | None = None
    """The simulated rig preset this trial needs; None: the rig's configured preset."""

    @model_validator(mode="after")
    def _has_length(self, info: ValidationInfo) -> TrialSpec:
        scripted = bool(info.context and info.context.get("scripted"))
        if self.duration is None and self.phases is None and not scripted:
            raise ValueError("give 'duration' (one measure phase) or 'phases' (a script)")
        return self


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from."""

    spec: TrialSpec
    path: Path
    sha256: str
    text: str
    script: Callable[[Any], Awaitable[None]] | None = None
    """A Python trial file's ``run(trial)``; None for YAML (its ``phases`` are the script)."""


class SpecError(Exception):
    """A spec that cannot be used; ``str()`` is the message for the user."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_spec(path: Path, known_kinds: set[str] | None = None) -> LoadedSpec:
    """Read, parse and validate a spec file; raise :class:`SpecError` naming file, line, field."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            path, [f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from exc
    if path.suffix == ".py":
        from labctl.trial.pyfile import load_python_trial

        return load_python_trial(path, text, known_kinds)
    return parse_spec(text, path, known_kinds)


def parse_spec(text: str, path: Path, known_kinds: set[str] | None = None) -> LoadedSpec:
    """Validate spec text; ``path`` is used for messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(path, [f"{where}: not valid YAML: {problem}"]) from exc
    if node is None or not isinstance(node, yaml.MappingNode):
        raise SpecError(path, [f"{path}:1: a trial spec is a mapping with 'trial:', 'kind:', …"])
    loader = yaml.SafeLoader(text)
    try:
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:  # e.g. a !!python tag: SafeLoader refuses to build it
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SpecError(path, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    finally:
        loader.dispose()
    try:
        spec = TrialSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(node, loc)
            field = ".".join(str(p) for p in loc if not _is_union_tag(p)) or "(top level)"
            problems.append(f"{path}:{line}: {field}: {_words(err)}")
        raise SpecError(path, problems) from exc
    if known_kinds is not None and spec.kind not in known_kinds:
        line = _line_of(node, ("kind",))
        kinds = ", ".join(sorted(known_kinds)) or "none installed"
        raise SpecError(
            path, [f"{path}:{line}: kind: no evaluator called {spec.kind!r} (known: {kinds})"]
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedSpec(spec=spec, path=path, sha256=digest, text=text)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and part in _UNION_TAGS


_UNION_TAGS = frozenset(
    {
        "WaitStep",
        "MeasureStep",
        "CommandStep",
        "StimulusStep",
        "PromptStep",
        "ReplayStep",
        "LiveStep",
        "SetConditions",
    }
)


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest YAML node that ``loc`` reaches."""
    current = node
    for part in loc:
        if _is_union_tag(part):
            continue
        nxt: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if str(key_node.value) == str(part):
                    nxt = value_node
                    break
            if nxt is None:  # a missing key: point at the mapping that lacks it
                break
        elif (
            isinstance(current, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(current.value)
        ):
            nxt = current.value[part]
        if nxt is None:
            break
        current = nxt
    return int(current.start_mark.line) + 1


def _words(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see trials/ for examples)"
    if kind == "literal_error":
        return msg
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg
