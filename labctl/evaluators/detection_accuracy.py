"""The ``detection-accuracy`` evaluator: AI camera boxes against a scene dataset's ground truth.

The trial presents frames of a dataset (``labctl scenes make``) to the devices under test and
each device answers with its detections. The evaluator judges each device by these rules:

* Only presented images are evaluated: the ground truth is restricted to the frames presented
  (one evaluated image per frame; a frame whose image the ground truth lacks is noted and
  left out).
* A device's first detections message for a frame is its answer. A second message for the same
  frame is counted as a duplicate message and ignored.
* An answer arriving later than ``presented_at + deadline_s`` is a missed deadline: its
  detections are excluded and the frame counts with no detections. A frame never answered is a
  missed deadline too (``missed_deadlines`` = late messages + unanswered frames).
* Answers for frames never presented are counted (``unknown_frames``) and excluded.
* Boxes wholly outside the image are counted (``boxes_outside``) and excluded; boxes partly
  outside are clipped to the image (``boxes_clipped``).
* Labels that are not a category name of the ground truth are counted (``unknown_labels``) and
  excluded, as are objects with a non-finite score or box (``bad_values``).
* Latency is the time from presentation to the first answer (controller clock), including late
  answers; ``latency_p50/p95/p99`` are numpy's linear percentiles, in seconds.
* Conditions the controller measured on a presented frame (a
  :class:`~labctl.observations.FrameConditions`, e.g. a live camera frame's ``brightness``,
  ``contrast``, ``sharpness``) join that image's conditions, so the breakdown can bin by them;
  a measured value replaces an annotated one of the same name.

Metrics per device: COCO ``ap`` (AP@[.5:.95]), ``ap50``, ``ap75``, ``ar100`` and the other
pycocotools figures (see :mod:`labctl.evaluators.coco`), the operating point ``precision``,
``recall``, ``f1`` and ``id_accuracy`` at IoU ≥ ``iou`` (see
:mod:`labctl.evaluators.operating_point`), with bootstrap 95 % intervals on ``ap50`` and
``recall``; and a breakdown by scene condition naming where each criterion first fails (see
:mod:`labctl.evaluators.detection_breakdown`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.evaluators.base import Subject
from labctl.evaluators.coco_data import (
    CocoDetections,
    CocoError,
    CocoGroundTruth,
    load_ground_truth,
)
from labctl.evaluators.detection_breakdown import condition_bins
from labctl.evaluators.detection_frames import FrameLog, evaluated_frames, subject_data
from labctl.evaluators.detection_scoring import (
    KNOWN_METRICS,
    ONLINE_ONLY,
    Settings,
    SubjectData,
    score_subject,
)
from labctl.evaluators.result import EvaluationResult, SubjectResult
from labctl.observations import (
    DetectionsObserved,
    FrameConditions,
    FramePresented,
    Observation,
)
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

RULES = (
    "only presented images are evaluated; a device's first answer per frame counts",
    "answers after the frame's deadline, and frames never answered, are missed deadlines: "
    "the frame counts with no detections",
    "answers for frames never presented, boxes wholly outside the image, unknown labels and "
    "non-finite values are counted and excluded; boxes partly outside are clipped",
)
OFFLINE_RULES = (
    "every ground-truth image is evaluated; detections as given (not clipped); "
    "latency is not measured offline",
)


def default_criteria() -> dict[str, Criterion]:
    """Used when none are given (``labctl eval detections`` without ``--criteria``): AP50 ≥ 0.5."""
    return {"ap50": Criterion(min=0.5)}


class DetectionOptions(BaseModel):
    """``options:`` of a ``detection-accuracy`` trial spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: Path
    """A ``labctl scenes make`` directory (or its ``annotations.json``); relative paths are
    taken from the working directory."""
    iou: float = Field(default=0.5, gt=0.0, le=1.0)
    """IoU threshold of the operating point (precision, recall, F1, identification)."""
    bootstrap: int = Field(default=200, ge=0, le=10_000)
    """Resamples for the 95 % intervals of ap50 and recall (0: none)."""
    seed: int = 0


class DetectionAccuracyEvaluator:
    """Streaming evaluator of detections (see the module docstring for the rules)."""

    name: ClassVar[str] = "detection-accuracy"

    def __init__(
        self,
        ground_truth: CocoGroundTruth,
        subjects: Sequence[Subject] = (),
        *,
        criteria: Mapping[str, Criterion] | None = None,
        conditions: Sequence[str] = (),
        bins: Mapping[str, Sequence[float]] | None = None,
        iou: float = 0.5,
        bootstrap: int = 200,
        seed: int = 0,
    ) -> None:
        """Judge ``subjects`` (every subject that answers when none are given; subjects with
        role ``reference`` are not judged) against ``ground_truth``. ``criteria`` default to
        :func:`default_criteria`; ``conditions`` are image conditions to break down by, with
        edges from ``bins`` or the defaults. Raises ValueError in words."""
        crit = dict(default_criteria() if criteria is None else criteria)
        unknown = [k for k in crit if k not in KNOWN_METRICS]
        if unknown:
            raise ValueError(
                f"detection-accuracy has no metric called {', '.join(map(repr, unknown))} to "
                f"judge; criteria can be set on: {', '.join(KNOWN_METRICS)}"
            )
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must lie in (0, 1], got {iou}")
        self.gt = ground_truth
        self._notes: list[str] = list(ground_truth.notes)
        self._notes.append(
            "operating point (precision, recall, F1, identification): every reported detection "
            f"counts, matched greedily by score at IoU ≥ {iou:g}; crowd regions are ignored"
        )
        if ground_truth.baseline:
            self._notes.append(
                "the dataset sweeps one condition at a time: each condition's breakdown uses "
                "the images whose other conditions are at the baseline "
                + ", ".join(f"{k} {v:g}" for k, v in ground_truth.baseline.items())
            )
        self.settings = Settings(
            criteria=crit,
            bins=condition_bins(conditions, bins, self._notes),
            iou=iou,
            bootstrap=bootstrap,
            seed=seed,
        )
        self.subjects: dict[str, Subject] = {}
        for s in subjects:
            if s.key in self.subjects:
                raise ValueError(f"subject {s.key!r} is given twice")
            if s.role != "reference":
                self.subjects[s.key] = s
        self._open = not subjects
        self._frames = FrameLog()
        self._ignored: Counter[str] = Counter()
        self._measured: dict[int, dict[str, float]] = {}
        """Conditions measured on presented frames (live camera), by image id."""

    @classmethod
    def from_spec(cls, spec: TrialSpec, subjects: Sequence[Subject]) -> DetectionAccuracyEvaluator:
        """Build from a trial spec: ground truth from ``options.dataset``; criteria, conditions
        and bins from the spec. Raises ValueError in words."""
        try:
            opts = DetectionOptions.model_validate(spec.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"options.{'.'.join(map(str, e['loc']))}: "
                + str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors(include_url=False)
            )
            raise ValueError(f"detection-accuracy: {problems}") from None
        try:
            gt = load_ground_truth(opts.dataset)
        except CocoError as exc:
            raise ValueError(f"detection-accuracy: options.dataset: {exc}") from None
        return cls(
            gt,
            subjects,
            criteria=spec.criteria,
            conditions=spec.conditions,
            bins=spec.bins,
            iou=opts.iou,
            bootstrap=opts.bootstrap,
            seed=opts.seed,
        )

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Readings are not judged by this evaluator: ignored."""

    def observe(self, obs: Observation) -> None:
        """Take a presented frame, its measured conditions or a device's detections; other
        observations are ignored."""
        if isinstance(obs, FramePresented):
            self._frames.present(obs)
        elif isinstance(obs, FrameConditions):
            # The first measurement of an image counts, like its first presentation.
            self._measured.setdefault(obs.image_id, dict(obs.conditions))
        elif isinstance(obs, DetectionsObserved):
            if self._open:
                self.subjects.setdefault(obs.subject, _subject(obs.subject))
            elif obs.subject not in self.subjects:
                self._ignored[obs.subject] += 1
                return
            self._frames.log(obs.subject).answer(obs)

    def result(self) -> EvaluationResult:
        """Every metric, criterion outcome, breakdown and limitation so far."""
        notes = list(self._notes)
        frames = self._frames
        view, order = evaluated_frames(self.gt, frames)
        if self._measured:
            view = with_measured(view, self._measured, notes)
        lost = len(frames.frames) - len(order)
        notes.append(
            f"{len(frames.frames)} frames presented, {len(order)} evaluated"
            + (f"; {lost} showed images the ground truth does not have" if lost else "")
            + (
                f"; {frames.repeated} frame ids presented again (first kept)"
                if frames.repeated
                else ""
            )
        )
        for key, n in self._ignored.items():
            notes.append(
                f"{n} detections messages from {key}, not a subject of this trial: ignored"
            )
        notes.extend(f"rule: {r}" for r in RULES)
        subjects = [
            score_subject(subject_data(s, view, order, frames), self.settings)
            for s in self.subjects.values()
        ]
        return EvaluationResult(evaluator=self.name, subjects=subjects, notes=notes)

    def score_results(self, subject: str, detections: CocoDetections) -> EvaluationResult:
        """Judge a COCO results file offline: every image of the ground truth is evaluated,
        detections are taken as given (their image and category indices are this ground
        truth's) and latency is not measured."""
        crit = self.settings.criteria
        offline = [m for m in crit if m in ONLINE_ONLY]
        if offline:
            raise ValueError(
                f"{', '.join(offline)} cannot be judged offline: a results file carries no "
                "timing and no messages"
            )
        data = SubjectData(_subject(subject), self.gt, detections)
        result: SubjectResult = score_subject(data, self.settings)
        notes = [*self._notes, *detections.notes, *(f"rule: {r}" for r in OFFLINE_RULES)]
        return EvaluationResult(evaluator=self.name, subjects=[result], notes=notes)


def with_measured(
    gt: CocoGroundTruth, measured: Mapping[int, Mapping[str, float]], notes: list[str]
) -> CocoGroundTruth:
    """``gt`` with the conditions measured on each image's frame merged into the image's
    conditions (a measured value replaces an annotated one of the same name; noted)."""
    merged: list[Mapping[str, float]] = []
    clashes: set[str] = set()
    for image_id, cond in zip(gt.image_ids.tolist(), gt.conditions, strict=True):
        extra = measured.get(int(image_id))
        if extra is None:
            merged.append(cond)
            continue
        clashes.update(k for k in extra if k in cond)
        merged.append({**cond, **extra})
    if clashes:
        notes.append(f"measured {', '.join(sorted(clashes))} replaced the annotation file's values")
    return replace(gt, conditions=tuple(merged))


def _subject(key: str) -> Subject:
    vendor, _, device = key.partition("/")
    return Subject(key=key, role="dut", vendor=vendor if device else "", device=device or key)
