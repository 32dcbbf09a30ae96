"""The detection-accuracy evaluator on observations: the counting rules, agreement with
pycocotools on the presented frames, the condition breakdown and the limitation wording."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.evaluators.base import ObservingEvaluator, Subject, evaluator_registry
from labctl.evaluators.breakdown import make_bins
from labctl.evaluators.coco_data import parse_ground_truth
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator
from labctl.evaluators.detection_breakdown import (
    MIN_OBJECTS_TO_JUDGE,
    breakdown,
    first_failures,
)
from labctl.evaluators.result import BinResult, SubjectResult
from labctl.observations import DetectedObject, DetectionsObserved, FramePresented
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec
from tests.cocogen import Doc, make_scenes, reference

BOX1 = "acme/box1"
W, H = 1280, 720


def _spec(dataset: Path, **extra: Any) -> TrialSpec:
    doc: dict[str, Any] = {
        "trial": "signboards",
        "title": "Signboard detection",
        "kind": "detection-accuracy",
        "devices": {"boxes": {"role": "dut", "channel": "detections"}},
        "duration": 60,
        "criteria": {"ap50": {"min": 0.5}, "recall": {"min": 0.8}},
        "options": {"dataset": str(dataset), "bootstrap": 50, "seed": 1},
    }
    doc.update(extra)
    return TrialSpec.model_validate(doc)


def _dataset(tmp_path: Path, gt: Doc) -> Path:
    d = tmp_path / "scenes"
    d.mkdir()
    (d / "annotations.json").write_text(json.dumps(gt))
    return d


def _objects(dets: Iterable[Doc]) -> tuple[DetectedObject, ...]:
    return tuple(
        DetectedObject(tuple(d["bbox"]), "signboard", d["score"], d.get("ref")) for d in dets
    )


def _feed(
    ev: DetectionAccuracyEvaluator,
    gt: Doc,
    dets: list[Doc],
    *,
    images: Iterable[int] | None = None,
    late: set[int] = frozenset(),  # type: ignore[assignment]
    silent: set[int] = frozenset(),  # type: ignore[assignment]
    latency: dict[int, float] | None = None,
    subject: str = BOX1,
) -> None:
    by: dict[int, list[Doc]] = {}
    for d in dets:
        by.setdefault(d["image_id"], []).append(d)
    t = 1_000.0
    for image_id in images if images is not None else [im["id"] for im in gt["images"]]:
        frame = f"run1.{image_id}"
        ev.observe(FramePresented(frame, image_id, t, 2.0))
        if image_id not in silent:
            lag = 2.5 if image_id in late else (latency or {}).get(image_id, 0.1)
            objs = _objects(by.get(image_id, []))
            ev.observe(DetectionsObserved(subject, frame, image_id, t, t + lag, objs))
        t += 3.0


def _clipped(dets: list[Doc]) -> list[Doc]:
    """The boxes as the evaluator should see them: clipped to the 1280×720 image."""
    out = []
    for d in dets:
        x, y, w, h = d["bbox"]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        out.append(dict(d, bbox=[x0, y0, x1 - x0, y1 - y0]))
    return out


def _only(gt: Doc, keep: set[int]) -> Doc:
    return dict(
        gt,
        images=[im for im in gt["images"] if im["id"] in keep],
        annotations=[a for a in gt["annotations"] if a["image_id"] in keep],
    )


def _metrics(s: SubjectResult) -> dict[str, float | None]:
    return {m.name: m.value for m in s.metrics}


def test_registered_and_observing() -> None:
    factory = evaluator_registry().get("detection-accuracy")
    assert factory is DetectionAccuracyEvaluator
    gt, _ = make_scenes(1, images=5)
    ev = DetectionAccuracyEvaluator(parse_ground_truth(gt, "gt.json"))
    assert isinstance(ev, ObservingEvaluator)
    assert ev.name == "detection-accuracy"


def test_presented_frames_only_equal_pycocotools(tmp_path: Path) -> None:
    gt, dets = make_scenes(2, images=120)
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), [])
    shown = {im["id"] for im in gt["images"] if im["id"] % 3 != 0}
    ev.add(BOX1, 0.0, {"pm25": 1.0})  # readings are ignored
    _feed(ev, gt, dets, images=sorted(shown))
    result = ev.result()
    (s,) = result.subjects
    m = _metrics(s)
    ref = reference(_only(gt, shown), _clipped([d for d in dets if d["image_id"] in shown]))
    for i, name in enumerate(("ap", "ap50", "ap75")):
        assert m[name] == pytest.approx(ref.stats[i], abs=1e-6)
    assert m["ar100"] == pytest.approx(ref.stats[8], abs=1e-6)
    assert m["frames"] == len(shown)
    assert m["gt_objects"] == sum(a["image_id"] in shown for a in gt["annotations"])
    assert m["missed_deadlines"] == 0 and m["unknown_frames"] == 0
    assert m["boxes_clipped"] and m["boxes_clipped"] > 0  # the generator's boxes poke out
    assert s.passed == all(o.passed for o in s.criteria)
    assert any("only presented images" in n for n in result.notes)


def test_late_and_missing_answers_are_missed_deadlines(tmp_path: Path) -> None:
    gt, dets = make_scenes(3, images=60)
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), [])
    ids = [im["id"] for im in gt["images"]]
    late, silent = set(ids[:10]), set(ids[10:15])
    _feed(ev, gt, dets, late=late, silent=silent)
    m = _metrics(ev.result().subjects[0])
    assert (m["late_messages"], m["unanswered_frames"], m["missed_deadlines"]) == (10, 5, 15)
    assert m["frames"] == 60  # the frames still count, with no detections
    kept = [d for d in dets if d["image_id"] not in late | silent]
    ref = reference(gt, _clipped(kept))
    assert m["ap"] == pytest.approx(ref.stats[0], abs=1e-6)
    assert m["ap50"] == pytest.approx(ref.stats[1], abs=1e-6)


def test_unknown_frames_and_duplicate_messages_change_nothing(tmp_path: Path) -> None:
    gt, dets = make_scenes(4, images=40)
    spec = _spec(_dataset(tmp_path, gt))
    plain = DetectionAccuracyEvaluator.from_spec(spec, [])
    _feed(plain, gt, dets)
    noisy = DetectionAccuracyEvaluator.from_spec(spec, [])
    _feed(noisy, gt, dets)
    junk = (DetectedObject((5.0, 5.0, 50.0, 50.0), "signboard", 0.99),)
    for image_id in (1, 2, 3):  # second answers to presented frames: ignored
        noisy.observe(DetectionsObserved(BOX1, f"run1.{image_id}", 99, 0.0, 1_000.5, junk))
    for frame in ("run1.9999", "other.1"):  # frames never presented
        noisy.observe(DetectionsObserved(BOX1, frame, 99, 0.0, 1_000.5, junk))
    a, b = _metrics(plain.result().subjects[0]), _metrics(noisy.result().subjects[0])
    assert (b["duplicate_messages"], b["unknown_frames"]) == (3, 2)
    assert b["messages"] == a["messages"] + 5  # type: ignore[operator]
    for name in ("ap", "ap50", "precision", "recall", "id_accuracy", "detections"):
        assert a[name] == b[name], name


def test_boxes_outside_clipped_unknown_labels_and_bad_values(tmp_path: Path) -> None:
    gt = {
        "images": [{"id": 1, "width": W, "height": H, "conditions": {}}],
        "categories": [{"id": 1, "name": "signboard"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1200, 600, 80, 120],
             "area": 9600, "iscrowd": 0, "register_id": "SB-0001"},
        ],
    }  # fmt: skip
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), [])
    ev.observe(FramePresented("f1", 1, 10.0, 2.0))
    objs = (
        # Partly outside: clipped to [1220, 610, 60, 110], IoU 6600/9600 = 0.69 (unclipped 0.37).
        DetectedObject((1220.0, 610.0, 100.0, 150.0), "signboard", 0.9, "SB-0001"),
        DetectedObject((2000.0, 10.0, 50.0, 50.0), "signboard", 0.8),  # wholly outside
        DetectedObject((10.0, 10.0, 50.0, 50.0), "car", 0.8),  # not a category
        DetectedObject((10.0, 10.0, 50.0, 50.0), "signboard", math.nan),
        DetectedObject((10.0, 10.0, math.inf, 50.0), "signboard", 0.5),
    )
    ev.observe(DetectionsObserved(BOX1, "f1", 1, 0.0, 10.2, objs))
    m = _metrics(ev.result().subjects[0])
    assert (m["boxes_clipped"], m["boxes_outside"]) == (1, 1)
    assert (m["unknown_labels"], m["bad_values"]) == (1, 2)
    assert m["detections"] == 1
    assert (m["precision"], m["recall"], m["id_accuracy"]) == (1.0, 1.0, 1.0)
    assert m["latency_p50"] == pytest.approx(0.2)


def test_latency_percentiles_are_numpy_linear(tmp_path: Path) -> None:
    gt, dets = make_scenes(5, images=50)
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), [])
    rng = np.random.default_rng(0)
    lat = {im["id"]: float(rng.gamma(2.0, 0.2)) for im in gt["images"]}
    late = {i for i, v in lat.items() if v > 2.0}
    _feed(ev, gt, dets, latency=lat)
    m = _metrics(ev.result().subjects[0])
    values = np.array(list(lat.values()))
    for q in (50, 95, 99):
        assert m[f"latency_p{q}"] == pytest.approx(np.percentile(values, q), abs=1e-9)
    assert m["late_messages"] == len(late)


def test_subjects_of_the_trial_only(tmp_path: Path) -> None:
    gt, dets = make_scenes(6, images=20)
    subjects = [
        Subject(BOX1, "dut", vendor="acme", device="box1"),
        Subject("acme/idle", "dut", vendor="acme", device="idle"),
        Subject("lab/ref", "reference"),
    ]
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), subjects)
    _feed(ev, gt, dets)
    _feed(ev, gt, dets, subject="rogue/x")
    result = ev.result()
    by = {s.subject: s for s in result.subjects}
    assert set(by) == {BOX1, "acme/idle"}
    idle = _metrics(by["acme/idle"])
    assert (idle["unanswered_frames"], idle["recall"], idle["frames"]) == (20, 0.0, 20)
    assert not by["acme/idle"].passed
    assert any("rogue/x" in n and "ignored" in n for n in result.notes)
    assert by[BOX1].vendor == "acme"


def test_intervals_on_ap50_and_recall(tmp_path: Path) -> None:
    gt, dets = make_scenes(7, images=80)
    ev = DetectionAccuracyEvaluator.from_spec(_spec(_dataset(tmp_path, gt)), [])
    _feed(ev, gt, dets)
    s = ev.result().subjects[0]
    for name in ("ap50", "recall"):
        m = s.metric(name)
        assert m is not None and m.ci95 is not None and m.value is not None
        assert m.ci95[0] <= m.value <= m.ci95[1]
    ap = s.metric("ap")
    assert ap is not None and ap.ci95 is None


def test_options_and_criteria_errors_in_words(tmp_path: Path) -> None:
    gt, _ = make_scenes(8, images=5)
    d = _dataset(tmp_path, gt)
    with pytest.raises(ValueError, match=r"options\.iou"):
        DetectionAccuracyEvaluator.from_spec(_spec(d, options={"dataset": str(d), "iou": 1.5}), [])
    with pytest.raises(ValueError, match=r"options\.dataset"):
        DetectionAccuracyEvaluator.from_spec(_spec(d, options={}), [])
    with pytest.raises(ValueError, match="no such file"):
        DetectionAccuracyEvaluator.from_spec(_spec(tmp_path / "nowhere"), [])
    with pytest.raises(ValueError, match="no metric called 'mAP'"):
        DetectionAccuracyEvaluator.from_spec(_spec(d, criteria={"mAP": {"min": 0.5}}), [])


# --- breakdown and limitations ----------------------------------------------------------------


def test_recall_falling_with_blur_is_named(tmp_path: Path) -> None:
    gt, dets = make_scenes(9, images=240)
    spec = _spec(
        _dataset(tmp_path, gt),
        criteria={"recall": {"min": 0.8}, "precision": {"min": 0.5}},
        conditions=["blur"],
    )
    ev = DetectionAccuracyEvaluator.from_spec(spec, [])
    _feed(ev, gt, dets)
    (s,) = ev.result().subjects
    labels = [b.label for b in s.breakdown]
    assert labels == [
        "blur σ < 1 px",
        "1 px ≤ blur σ < 2 px",
        "2 px ≤ blur σ < 3 px",
        "blur σ ≥ 3 px",
    ]
    assert [b.failed for b in s.breakdown] == [[], [], [], ["recall"]]
    (lim,) = s.limitations
    assert (lim.condition, lim.bin, lim.criteria) == ("blur", "blur σ ≥ 3 px", ["recall"])
    assert lim.text.startswith(f"{BOX1}: recall drops below 0.8 (")
    assert lim.text.endswith("when blur σ ≥ 3 px")
    # Per-bin recall equals the evaluator run on that bin's images alone.
    top = s.breakdown[-1]
    blurred = {im["id"] for im in gt["images"] if im["conditions"]["blur"] >= 3.0}
    assert top.metrics["images"] == len(blurred)
    alone = DetectionAccuracyEvaluator.from_spec(spec, [])
    _feed(alone, gt, dets, images=sorted(blurred))
    m = _metrics(alone.result().subjects[0])
    assert top.metrics["recall"] == pytest.approx(m["recall"])
    assert top.metrics["ap50"] == pytest.approx(m["ap50"])
    assert top.n == m["gt_objects"]


def _bins(
    condition: str, edges: list[float], failed: list[list[str]], n: int = 50
) -> list[BinResult]:
    return [
        BinResult(
            condition=condition,
            label=b.label,
            lower=b.lower,
            upper=b.upper,
            n=n,
            metrics={"recall": 0.5, "ap50": 0.4, "latency_p95": 0.8},
            failed=f,
        )
        for b, f in zip(make_bins(condition, edges), failed, strict=True)
    ]


CRIT = {"recall": Criterion(min=0.8), "ap50": Criterion(min=0.5)}


def test_limitation_walks_up_for_blur() -> None:
    results = _bins("blur", [1, 2, 3], [[], [], ["recall"], ["recall", "ap50"]])
    lims = first_failures("d", "blur", results, CRIT, {})
    assert [(x.bin, x.criteria) for x in lims] == [
        ("2 px ≤ blur σ < 3 px", ["recall"]),
        ("blur σ ≥ 3 px", ["ap50"]),
    ]
    assert lims[0].text == "d: recall drops below 0.8 (0.5) when blur σ ≥ 2 px"
    assert lims[1].text == "d: ap50 drops below 0.5 (0.4) when blur σ ≥ 3 px"


def test_limitation_walks_down_for_light_and_size() -> None:
    light = _bins("light", [0.3, 0.6], [["recall"], ["recall"], []])
    (lim,) = first_failures("d", "light", light, CRIT, {})
    assert lim.bin == "0.3 ≤ light < 0.6"
    assert lim.text == "d: recall drops below 0.8 (0.5) when light < 0.6"
    size = _bins("size", [40, 80], [["recall", "ap50"], [], []])
    (lim,) = first_failures("d", "size", size, CRIT, {})
    assert lim.criteria == ["recall", "ap50"]
    assert (
        lim.text
        == "d: recall drops below 0.8 (0.5) and ap50 drops below 0.5 (0.4) when size < 40 px"
    )


def test_failing_at_the_benign_end_says_even() -> None:
    blur = _bins("blur", [1, 2, 3], [["recall"], ["recall"], [], []])
    (lim,) = first_failures("d", "blur", blur, CRIT, {})
    assert lim.text.endswith("even when blur σ < 1 px")
    light = _bins("light", [0.3, 0.6], [[], [], ["recall"]])
    (lim,) = first_failures("d", "light", light, CRIT, {})
    assert lim.text.endswith("even when light ≥ 0.6")


def test_max_criteria_rise_above_with_units() -> None:
    results = _bins("rain", [0.2, 0.5], [[], ["latency_p95"], ["latency_p95"]])
    (lim,) = first_failures(
        "d", "rain", results, {"latency_p95": Criterion(max=0.5)}, {"latency_p95": "s"}
    )
    assert lim.text == "d: latency_p95 rises above 0.5 s (0.8 s) when rain ≥ 0.2"


def test_bins_with_few_objects_are_shown_not_judged() -> None:
    values = {"blur": np.array([0.5] * 5 + [3.5] * 20)}
    per_image_objects = np.array([1] * 5 + [2] * 20)

    def metrics_for(mask: np.ndarray) -> tuple[int, dict[str, float | None]]:
        return int(per_image_objects[mask].sum()), {"recall": 0.1}

    bins = {"blur": make_bins("blur", [1, 2, 3])}
    results, lims = breakdown("d", values, bins, metrics_for, CRIT, {})
    by = {b.label: b for b in results}
    assert by["blur σ < 1 px"].n == 5 < MIN_OBJECTS_TO_JUDGE
    assert by["blur σ < 1 px"].failed == []
    assert by["blur σ ≥ 3 px"].failed == ["recall", "ap50"]  # ap50 missing: never holds
    assert by["1 px ≤ blur σ < 2 px"].metrics["images"] == 0
    assert [x.bin for x in lims] == ["blur σ ≥ 3 px"]


def test_grid_datasets_are_broken_down_one_factor_at_a_time() -> None:
    import math

    import numpy as np

    from labctl.evaluators.coco_data import parse_ground_truth
    from labctl.evaluators.detection_scoring import _one_factor_at_a_time

    conds = [
        {"blur": 0.0, "light": 1.0},  # the baseline
        {"blur": 3.0, "light": 1.0},  # the blur sweep
        {"blur": 0.0, "light": 0.1},  # the light sweep: must not land in a blur bin
        {"blur": 3.0, "light": 0.1},  # not a grid point: in neither breakdown
    ]
    doc = {
        "info": {"conditions": {"mode": "grid", "baseline": {"blur": 0.0, "light": 1.0}}},
        "images": [{"id": i + 1, "conditions": c} for i, c in enumerate(conds)],
        "annotations": [],
        "categories": [{"id": 1, "name": "signboard"}],
    }
    gt = parse_ground_truth(doc, "grid.json")
    assert gt.baseline == {"blur": 0.0, "light": 1.0}
    raw = {k: np.array([c[k] for c in conds]) for k in ("blur", "light")}
    out = _one_factor_at_a_time(gt, raw)
    assert [x if not math.isnan(x) else None for x in out["blur"]] == [0.0, 3.0, None, None]
    assert [x if not math.isnan(x) else None for x in out["light"]] == [1.0, None, 0.1, None]
    # Sampled datasets keep the marginal breakdown.
    doc["info"] = {"conditions": {"mode": "sample", "baseline": {"blur": 0.0}}}
    assert parse_ground_truth(doc, "sampled.json").baseline is None
