"""A live-camera trial end to end on real parts: generated street scenes written as a video
(the "camera"), a real Mosquitto, a simulated vendor AI box (real OpenCV detector) and the whole
trial runner on an external (non-simulated) rig. The verdict is checked against pycocotools on
the detections the box actually published, and the brightness breakdown against the frames
decoded independently."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import orjson
import pytest
from labctl_drivers.camera import read_evidence_index
from labctl_sim.aibox import signsight_s1

from labctl.bus.broker import PrivateBroker
from labctl.config import load_settings
from labctl.evaluators.base import evaluator_registry
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator
from labctl.protocol import topics
from labctl.scenes import make_dataset
from labctl.store.runs import RunStore
from labctl.trial.checks import check_spec
from labctl.trial.runner import TrialRunner
from tests.aibox_lab import lab, running
from tests.cocogen import reference

pytestmark = pytest.mark.integration

W, H = 640, 360
N = 8

SPEC = """\
trial: street-live
title: Signboards seen by the lab camera
kind: detection-accuracy
speed: 1
devices:
  boxes: {{role: dut, channel: detections, min: 1}}
options: {{bootstrap: 0}}
conditions: [brightness]
bins: {{brightness: [{edge}]}}
criteria:
  recall: {{min: 0.5}}
phases:
  - name: watch
    steps:
      - stimulus:
          live: {{camera: street.avi, annotations: scenes/annotations.json, deadline: 5s,
                 record: true}}
"""


def grey_mean(image: np.ndarray) -> float:
    """Mean grey level with BT.601 weights in numpy (not the driver's OpenCV path)."""
    b, g, r = (image[:, :, i].astype(np.float64) for i in range(3))
    return float(np.rint(0.114 * b + 0.587 * g + 0.299 * r).mean())


def write_camera_video(path: Path, scenes: Path) -> list[float]:
    """Frame 0 a blank picture (no ground truth), frame k the scene with image id k, and one
    more blank frame after the last; returns each frame's brightness as decoded back."""
    blank = np.full((H, W, 3), 90, np.uint8)
    frames = [blank, *(cv2.imread(str(scenes / f"images/{k:06d}.jpg")) for k in range(1, N + 1))]
    frames.append(blank)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out.append(grey_mean(image))
    cap.release()
    assert len(out) == N + 2
    return out


def metric(subject: Any, name: str) -> float | None:
    return next(m.value for m in subject.metrics if m.name == name)


def recall_at_50(ev: Any, image_ids: set[int]) -> float:
    """Recall at IoU 0.5 from pycocotools' per-image matching (all areas, every detection)."""
    matched = total = 0
    for e in ev.evalImgs:
        if e is None or e["image_id"] not in image_ids or e["aRng"] != [0, 1e10]:
            continue
        keep = ~np.asarray(e["gtIgnore"], dtype=bool)
        total += int(keep.sum())
        matched += int((np.asarray(e["gtMatches"])[0][keep] > 0).sum())
    return matched / total


async def test_a_live_camera_trial_is_scored_against_the_annotation_file(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    scenes = tmp_path / "scenes"
    ds = make_dataset(scenes, count=N, seed=5, conditions="light=1,0.6,0.3", size=(W, H))
    assert [im.id for im in ds.images] == list(range(1, N + 1))
    brightness = write_camera_video(tmp_path / "street.avi", scenes)
    edge = round(float(np.median(brightness[1 : N + 1])), 3)  # half the scenes on each side
    spec_path = tmp_path / "street-live.yaml"
    spec_path.write_text(SPEC.format(edge=edge))
    loaded = check_spec(spec_path, evaluator_registry())
    settings = load_settings(
        data_dir=tmp_path / "data",
        controller="ctl-live",
        broker={"mode": "external", "host": broker.host, "port": broker.port},
        rig={"simulated": False, "name": "bench", "roles": {}, "preflight_timeout_s": 20},
    )
    events: list[str] = []
    box = signsight_s1()
    async with lab(broker) as (_, seen), running(broker, scenes, [box]):
        runner = TrialRunner(
            settings,
            loaded,
            DetectionAccuracyEvaluator,
            RunStore(settings.store_path),
            on_event=events.append,
            preflight_timeout_s=20,
        )
        record = await runner.run()
    assert record.status in ("passed", "failed"), record.message
    assert record.evaluation is not None
    (s,) = record.evaluation.subjects
    assert s.subject == box.key
    # The camera frames with ground truth were presented (frame 0 has none), each answered.
    assert metric(s, "frames") == N and metric(s, "missed_deadlines") == 0
    stim = [m.topic for m in seen.msgs if "/stim/" in m.topic]
    assert stim == [
        topics.stimulus(box.vendor, box.id, f"{runner.run_id}.live1-{k}") for k in range(1, N + 1)
    ]
    assert any(
        e.startswith("live: past the last annotated frame (8): 8 frames presented of 9")
        for e in events
    ), events

    # The verdict, against pycocotools on what the box published (frame k shows image k).
    gt = orjson.loads((scenes / "annotations.json").read_bytes())
    results = []
    for m in seen.msgs:
        if m.topic != topics.events(box.vendor, box.id, "detections"):
            continue
        det = orjson.loads(m.payload)
        k = int(det["frame"].rsplit("-", 1)[1])
        for o in det["objects"]:
            x, y, w, h = o["bbox"]
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            results.append(
                {
                    "image_id": k,
                    "category_id": 1,
                    "score": o["score"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    assert results, "the box found nothing: the scenes do not test anything"
    ref = reference(copy.deepcopy(gt), results)
    assert metric(s, "ap50") == pytest.approx(ref.stats[1], abs=1e-6)
    everything = set(range(1, N + 1))
    assert metric(s, "recall") == pytest.approx(recall_at_50(ref, everything), abs=1e-9)
    assert metric(s, "gt_objects") == len(gt["annotations"])

    # The breakdown bins the images by the brightness measured on their camera frame.
    bins = [b for b in s.breakdown if b.condition == "brightness"]
    assert [b.label for b in bins] == [f"brightness < {edge:g}", f"brightness ≥ {edge:g}"]
    dark = {k for k in everything if brightness[k] < edge}
    assert 0 < len(dark) < N
    objects = [
        sum(a["image_id"] in ids for a in gt["annotations"]) for ids in (dark, everything - dark)
    ]
    assert [b.n for b in bins] == objects
    for b, ids in zip(bins, (dark, everything - dark), strict=True):
        assert b.metrics["recall"] == pytest.approx(recall_at_50(ref, ids), abs=1e-9)

    # Evidence: the presented frames with their measures, in the run directory.
    index = read_evidence_index(settings.data_dir / "runs" / runner.run_id / "live")
    assert [e.index for e in index] == list(range(1, N + 1))
    for e in index:
        assert e.brightness == pytest.approx(brightness[e.index], abs=0.05)
