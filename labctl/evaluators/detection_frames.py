"""Frames presented in a trial and each device's answers, turned into what a device is judged
on (see :mod:`labctl.evaluators.detection_accuracy` for the rules)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from labctl.evaluators.base import Subject
from labctl.evaluators.coco import DtBoxes
from labctl.evaluators.coco_data import CocoDetections, CocoGroundTruth
from labctl.evaluators.detection_scoring import SubjectData
from labctl.observations import DetectedObject, DetectionsObserved, FramePresented


@dataclass
class SubjectLog:
    """One device's answers: the first message per frame, and counts of the rest."""

    messages: int = 0
    duplicates: int = 0
    first: dict[str, DetectionsObserved] = field(default_factory=dict)

    def answer(self, obs: DetectionsObserved) -> None:
        """Keep the first message for a frame; count later ones as duplicates."""
        self.messages += 1
        if obs.frame in self.first:
            self.duplicates += 1
        else:
            self.first[obs.frame] = obs


@dataclass
class FrameLog:
    """Every frame presented (the first presentation of a frame id counts) and who answered."""

    frames: dict[str, FramePresented] = field(default_factory=dict)
    repeated: int = 0
    subjects: dict[str, SubjectLog] = field(default_factory=dict)

    def present(self, obs: FramePresented) -> None:
        """Record a presentation."""
        if obs.frame in self.frames:
            self.repeated += 1
        else:
            self.frames[obs.frame] = obs

    def log(self, subject: str) -> SubjectLog:
        """The answers of ``subject`` (empty if it never answered)."""
        return self.subjects.setdefault(subject, SubjectLog())


def evaluated_frames(gt: CocoGroundTruth, frames: FrameLog) -> tuple[CocoGroundTruth, list[str]]:
    """The ground truth of the presented frames whose image it knows, one image per frame in
    (image id, presentation) order, and those frames' ids in the same order."""
    ids = list(frames.frames)
    image_ids = np.array([frames.frames[f].image_id for f in ids], dtype=np.int64)
    index = gt.image_index(image_ids)
    known = np.flatnonzero(index >= 0)
    order = known[np.lexsort((known, image_ids[known]))]
    return gt.take(index[order]), [ids[i] for i in order.tolist()]


def _clip(
    o: DetectedObject, width: float, height: float, counts: Counter[str]
) -> tuple[float, float, float, float] | None:
    """The box clipped to the image, None when it lies wholly outside (counted)."""
    x, y, w, h = o.bbox
    if not math.isfinite(width) or not math.isfinite(height):
        return x, y, w, h
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        counts["boxes_outside"] += 1
        return None
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        counts["boxes_clipped"] += 1
        return x0, y0, x1 - x0, y1 - y0
    return x, y, w, h


def subject_data(
    subject: Subject, view: CocoGroundTruth, order: list[str], frames: FrameLog
) -> SubjectData:
    """What ``subject`` is judged on, from its first answer to each evaluated frame."""
    log = frames.subjects.get(subject.key, SubjectLog())
    pos = {f: i for i, f in enumerate(order)}
    names: dict[str, int] = {}
    for k, name in enumerate(view.category_names):
        names.setdefault(name, k)
    counts: Counter[str] = Counter(messages=log.messages, duplicate_messages=log.duplicates)
    latency = np.full(len(order), math.nan)
    image: list[int] = []
    category: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    scores: list[float] = []
    refs: list[str | None] = []
    for frame, obs in log.first.items():
        i = pos.get(frame)
        if i is None:
            # Frames presented with an image the ground truth lacks are noted once per trial.
            if frame not in frames.frames:
                counts["unknown_frames"] += 1
            continue
        presented = frames.frames[frame]
        latency[i] = obs.received_at - presented.presented_at
        if latency[i] > presented.deadline_s:
            counts["late_messages"] += 1
            continue
        for o in obs.objects:
            if (
                not (math.isfinite(o.score) and all(map(math.isfinite, o.bbox)))
                or min(o.bbox[2], o.bbox[3]) <= 0
            ):
                counts["bad_values"] += 1
                continue
            cat = names.get(o.label)
            if cat is None:
                counts["unknown_labels"] += 1
                continue
            box = _clip(o, float(view.width[i]), float(view.height[i]), counts)
            if box is None:
                continue
            image.append(i)
            category.append(cat)
            boxes.append(box)
            scores.append(o.score)
            refs.append(o.ref)
    counts["unanswered_frames"] = int(np.count_nonzero(np.isnan(latency)))
    dt = CocoDetections(
        DtBoxes(
            image=np.array(image, dtype=np.int64),
            category=np.array(category, dtype=np.int64),
            bbox=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            score=np.array(scores, dtype=np.float64),
        ),
        tuple(refs),
    )
    return SubjectData(subject, view, dt, latency, dict(counts))
