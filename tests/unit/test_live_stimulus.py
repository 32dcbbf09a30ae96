"""The ``live`` stimulus: the spec, the runner API and YAML dispatch, the frame-index ground
truth, the live trial's evaluator dataset, the presentation of a real camera source (an image
folder read by the camera driver) to fake devices, camera errors in words, and the evaluator's
breakdown by conditions measured on the frames."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from labctl_drivers.camera import read_evidence_index

from labctl.bus.edge import DetectionEvent, EdgeResult
from labctl.evaluators.base import evaluator_registry
from labctl.evaluators.coco_data import parse_ground_truth
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator
from labctl.observations import (
    DetectedObject,
    DetectionsObserved,
    FrameConditions,
    FramePresented,
    Observation,
)
from labctl.protocol.payloads import Detections
from labctl.readings import DeviceRef
from labctl.trial.checks import check_spec
from labctl.trial.datasets import DatasetError, resolve_dataset, with_live_ground_truth
from labctl.trial.live import LiveError, frame_truth, present_live
from labctl.trial.replay import FramePresenter
from labctl.trial.script import StepFailed, TrialScript, run_steps
from labctl.trial.spec import LiveStimulus, SpecError, parse_spec
from tests.cocogen import make_scenes
from tests.unit.test_trial_script import Host

DEV = DeviceRef("acme", "box1")

LIVE_YAML = """\
trial: street-live
title: Signboards seen by the lab camera
kind: detection-accuracy
devices:
  boxes: {role: dut, channel: detections}
conditions: [brightness]
criteria: {recall: {min: 0.5}}
phases:
  - name: watch
    steps:
      - stimulus:
          live: {camera: "0", annotations: street.json, frames: 40, every: 2,
                 deadline: 1500ms, record: true}
      - stimulus: {live: {camera: clips/street.mp4, annotations: street.json, fps: 12.5}}
"""


def _spec_problems(text: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(text, Path("live.yaml"))
    return str(err.value)


def test_the_live_step_parses_with_its_defaults() -> None:
    spec = parse_spec(LIVE_YAML, Path("live.yaml")).spec
    assert spec.phases is not None
    first, second = (s.stimulus.live for s in spec.phases[0].steps)  # type: ignore[union-attr]
    assert first == LiveStimulus(
        camera="0", annotations="street.json", frames=40, every=2, deadline=1.5, record=True
    )
    assert (second.camera, second.fps, second.frames, second.duration) == (
        "clips/street.mp4",
        12.5,
        None,
        None,
    )
    assert (second.every, second.deadline, second.record) == (1, 2.0, False)
    assert LiveStimulus(camera=0, annotations="a.json", duration="2m").duration == 120.0


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "{live: {camera: '0'}}",
            "live.yaml:11: phases.0.steps.0.stimulus.live.annotations: required field is missing",
        ),
        (
            "{live: {camera: '0', annotations: a.json, every: 0}}",
            "stimulus.live.every: Input should be greater than or equal to 1",
        ),
        (
            "{live: {camera: 'rtsp://cam-1/s', annotations: a.json, fps: 5}}",
            "fps paces video files and folders; a stream delivers at its own rate",
        ),
        ("{live: {camera: -1, annotations: a.json}}", "a USB camera index is 0 or more, not -1"),
        (
            "{live: {camera: '0', annotations: a.json, frame: 3}}",
            "stimulus.live.frame: unknown field",
        ),
        ("{live: {camera: '0', annotations: a.json, duration: soon}}", "'soon' is not a duration"),
        (
            "{lve: {camera: '0'}}",
            "a stimulus is 'replay: {…}', 'live: {camera: …, annotations: …}'",
        ),
    ],
)
def test_bad_live_steps_are_explained(step: str, message: str) -> None:
    text = (
        LIVE_YAML.split("phases:")[0]
        + f"phases:\n  - name: w\n    steps:\n      - stimulus: {step}\n"
    )
    problems = _spec_problems(text)
    assert message in problems, problems
    assert "LiveStep" not in problems and "StimulusStep" not in problems


class LiveHost(Host):
    def __init__(self) -> None:
        super().__init__(telemetry=False)
        self.lives: list[LiveStimulus] = []

    async def live(self, stim: LiveStimulus) -> None:
        self.lives.append(stim)

    def host(self) -> Any:
        h = super().host()
        h.live = self.live
        return h


async def test_yaml_and_python_trials_reach_the_live_hook() -> None:
    spec = parse_spec(LIVE_YAML, Path("live.yaml")).spec
    h = LiveHost()
    assert spec.phases is not None
    await run_steps(TrialScript(h.host()), spec.phases)
    assert [s.camera for s in h.lives] == ["0", "clips/street.mp4"]
    await TrialScript(h.host()).live(camera=2, annotations="x.json", frames=5)
    assert (h.lives[-1].camera, h.lives[-1].frames) == (2, 5)
    # A host that cannot show camera frames says so instead of skipping the step.
    with pytest.raises(StepFailed, match="cannot present live camera frames"):
        await TrialScript(Host().host()).live(camera=0, annotations="x.json")


# -- ground truth keyed by frame index ---------------------------------------------------------


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_frame_index_is_the_image_id_or_its_frame_index_field(tmp_path: Path) -> None:
    by_id = _write(tmp_path / "a.json", {"images": [{"id": 3}, {"id": 0}, {"id": -1}]})
    assert frame_truth(by_id) == {3: 3, 0: 0}
    keyed = _write(
        tmp_path / "b.json",
        {"images": [{"id": 1, "frame_index": 10}, {"id": 2, "frame_index": 0}, {"id": 3}]},
    )
    assert frame_truth(keyed) == {10: 1, 0: 2}  # id 3 names no frame: never presented
    twice = _write(
        tmp_path / "c.json", {"images": [{"id": 1, "frame_index": 4}, {"id": 2, "frame_index": 4}]}
    )
    with pytest.raises(LiveError, match="two images have frame_index 4"):
        frame_truth(twice)
    with pytest.raises(LiveError, match=r"images\.0\.frame_index: Input should be greater"):
        frame_truth(_write(tmp_path / "d.json", {"images": [{"id": 1, "frame_index": -2}]}))
    with pytest.raises(LiveError, match="no such file"):
        frame_truth(tmp_path / "missing.json")


def test_frame_truth_refuses_text_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{images: ")
    with pytest.raises(LiveError, match=r"bad\.json: not JSON"):
        frame_truth(bad)


# -- the evaluator's ground truth for a live trial ---------------------------------------------


def _trial(tmp_path: Path, live: str, options: str = "{}") -> tuple[Path, str]:
    text = LIVE_YAML.replace("criteria:", f"options: {options}\ncriteria:").split("phases:")[0] + (
        "phases:\n  - name: w\n    steps:\n"
        f"      - stimulus: {{live: {{camera: '0', annotations: {live}}}}}\n"
    )
    path = tmp_path / "trial.yaml"
    path.write_text(text)
    return path, text


async def test_a_live_trial_is_scored_against_its_annotation_file(tmp_path: Path) -> None:
    gt, _ = make_scenes(1, images=4)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _write(scenes / "annotations.json", gt)
    path, text = _trial(tmp_path, "scenes/annotations.json")
    spec = parse_spec(text, path).spec
    resolved, dataset = await resolve_dataset(spec, path, tmp_path / "run", lambda s: None)
    assert resolved.options["dataset"] == str(scenes / "annotations.json")
    assert dataset == scenes  # its register.json is what simulated boxes enroll
    # The same file named as a folder, or again in options.dataset, is the same ground truth.
    path, text = _trial(tmp_path, "scenes", "{dataset: scenes}")
    same, _ = with_live_ground_truth(parse_spec(text, path).spec, path)
    assert same.options["dataset"] == str(scenes / "annotations.json")
    # `labctl spec check` builds the evaluator on it.
    loaded = check_spec(path, evaluator_registry())
    assert loaded.spec.options["dataset"] == str(scenes / "annotations.json")


@pytest.mark.parametrize(
    ("live", "options", "message"),
    [
        (
            "scenes/annotations.json",
            "{dataset: other}",
            "options.dataset (other) is not the live steps' annotation file",
        ),
        ("scenes/annotations.json", "{scenes: {count: 3}}", "remove options.scenes"),
        ("nowhere.json", "{}", "nowhere.json: no such file"),
    ],
)
def test_conflicting_ground_truths_are_explained(
    tmp_path: Path, live: str, options: str, message: str
) -> None:
    (tmp_path / "scenes").mkdir()
    _write(tmp_path / "scenes" / "annotations.json", make_scenes(1, images=2)[0])
    path, text = _trial(tmp_path, live, options)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_live_ground_truth(parse_spec(text, path).spec, path)
    with pytest.raises(SpecError, match=r"trial\.yaml"):
        check_spec(path, evaluator_registry())


# -- presenting a real camera source to fake devices -------------------------------------------


def _grey_mean(image: np.ndarray) -> float:
    """Mean grey level, BT.601 weights in numpy (independent of the driver's OpenCV path)."""
    b, g, r = (image[:, :, i].astype(np.float64) for i in range(3))
    return float(np.rint(0.114 * b + 0.587 * g + 0.299 * r).mean())


def _folder(tmp_path: Path, n: int) -> tuple[Path, list[np.ndarray]]:
    """``n`` PNG frames (lossless) of rising brightness, with texture so sharpness > 0."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 60, (6, 8, 3), dtype=np.uint8)
    base = cv2.resize(blocks, (64, 48), interpolation=cv2.INTER_NEAREST)  # JPEG's 8×8 blocks
    folder = tmp_path / "frames"
    folder.mkdir()
    images = []
    for k in range(n):
        img = cv2.add(base, np.full_like(base, 20 * k % 200))
        cv2.imwrite(str(folder / f"{k:03d}.png"), img)
        images.append(img)
    return folder, images


class FakeBoxes:
    """Devices that answer every presented frame at once (through the controller listeners)."""

    def __init__(self, devices: list[DeviceRef], answer: bool = True) -> None:
        self.devices = devices
        self.answer = answer
        self.listeners: list[Any] = []
        self.published: list[tuple[str, bytes]] = []
        self.observed: list[Observation] = []
        self.events: list[str] = []

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        self.published.append((topic, payload))
        frame = topic.rsplit("/", 1)[1]
        ref = next(d for d in self.devices if f"/{d.vendor}/{d.device}/" in topic)
        if self.answer:
            det = Detections(seq=len(self.published), ts=time.time(), frame=frame)
            result = EdgeResult(detections=[DetectionEvent(ref, det, time.time_ns())])
            asyncio.get_running_loop().call_soon(lambda: [f(result) for f in self.listeners])

    def presenter(self) -> FramePresenter:
        return FramePresenter(
            self.publish,
            self.observed.append,
            self.listeners,
            self.devices,
            "run1",
            self.events.append,
            lambda: None,
        )


async def test_annotated_frames_are_presented_measured_and_recorded(tmp_path: Path) -> None:
    _, images = _folder(tmp_path, 9)
    # Ground truth for frames 0, 2, 3, 4, 6 (ids 100+index); frame 8 is past the last one.
    truth = {"images": [{"id": 100 + i, "frame_index": i} for i in (0, 2, 3, 4, 6)]}
    _write(tmp_path / "truth.json", truth)
    boxes = FakeBoxes([DEV, DeviceRef("acme", "box2")])
    stim = LiveStimulus(
        camera="frames/", annotations="truth.json", every=2, deadline=5.0, record=True
    )
    t0 = time.monotonic()
    summary = await present_live(
        boxes.presenter(), stim, spec_dir=tmp_path, step=1, evidence_dir=tmp_path / "ev"
    )
    assert time.monotonic() - t0 < 3  # answers ended each wait, not the 5 s deadline
    # Every 2nd frame is considered; 3 has ground truth but is not a multiple of 2.
    presented = [o for o in boxes.observed if isinstance(o, FramePresented)]
    assert [(p.frame, p.image_id, p.deadline_s) for p in presented] == [
        ("run1.live1-0", 100, 5.0),
        ("run1.live1-2", 102, 5.0),
        ("run1.live1-4", 104, 5.0),
        ("run1.live1-6", 106, 5.0),
    ]
    assert (summary.presented, summary.read, summary.unannotated, summary.missed) == (4, 7, 0, 0)
    assert summary.ended == "past the last annotated frame (6)"
    # Each frame went to both boxes as a JPEG of the camera frame.
    assert [t for t, _ in boxes.published][:2] == [
        "lab/v1/acme/box1/stim/run1.live1-0",
        "lab/v1/acme/box2/stim/run1.live1-0",
    ]
    for (_, jpeg), k in zip(boxes.published[::2], (0, 2, 4, 6), strict=True):
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == images[k].shape
        assert cv2.PSNR(decoded, images[k]) > 30  # the same picture, JPEG-coded
    # The conditions measured on each presented frame, against a numpy reference.
    conds = [o for o in boxes.observed if isinstance(o, FrameConditions)]
    assert [c.image_id for c in conds] == [100, 102, 104, 106]
    for c, k in zip(conds, (0, 2, 4, 6), strict=True):
        assert c.conditions["brightness"] == pytest.approx(_grey_mean(images[k]), abs=1e-9)
        assert c.conditions["sharpness"] > 0 and c.conditions["contrast"] > 0
    assert boxes.listeners == []  # the presenter left the controller's listeners
    # Evidence: the presented frames, with their measures.
    index = read_evidence_index(tmp_path / "ev")
    assert [e.index for e in index] == [0, 2, 4, 6]
    assert [e.brightness for e in index] == [c.conditions["brightness"] for c in conds]
    assert all((tmp_path / "ev" / e.file).is_file() for e in index)
    assert summary.evidence == tmp_path / "ev"


async def test_frames_limit_and_frames_without_truth(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, 6)
    _write(tmp_path / "truth.json", {"images": [{"id": i} for i in (1, 3, 4, 5)]})
    boxes = FakeBoxes([DEV], answer=False)
    stim = LiveStimulus(camera=str(folder) + "/", annotations="truth.json", frames=2, deadline=0.05)
    summary = await present_live(boxes.presenter(), stim, spec_dir=tmp_path, step=2)
    presented = [o for o in boxes.observed if isinstance(o, FramePresented)]
    assert [(p.frame, p.image_id) for p in presented] == [("run1.live2-1", 1), ("run1.live2-3", 3)]
    assert (summary.unannotated, summary.ended) == (2, "2 frames presented")  # frames 0 and 2
    assert not (tmp_path / "live").exists() and summary.evidence is None


async def test_duration_stops_a_paced_source(tmp_path: Path) -> None:
    _folder(tmp_path, 20)
    _write(tmp_path / "truth.json", {"images": [{"id": i} for i in range(20)]})
    boxes = FakeBoxes([DEV])
    # 20 frames/s for 0.2 s: about 4 of the 20 frames, certainly not all of them.
    stim = LiveStimulus(camera="frames/", annotations="truth.json", fps=20, duration=0.2)
    summary = await present_live(boxes.presenter(), stim, spec_dir=tmp_path, step=1)
    assert summary.ended == "duration 0.2 s reached"
    assert 1 <= summary.presented < 12
    assert summary.presented == len([o for o in boxes.observed if isinstance(o, FramePresented)])


async def test_camera_errors_are_in_words(tmp_path: Path) -> None:
    _folder(tmp_path, 3)
    _write(tmp_path / "truth.json", {"images": [{"id": i} for i in range(6)]})
    boxes = FakeBoxes([DEV])

    async def run(**kw: Any) -> None:
        stim = LiveStimulus(**{"camera": "frames/", "annotations": "truth.json", **kw})
        await present_live(boxes.presenter(), stim, spec_dir=tmp_path, step=1)

    with pytest.raises(
        LiveError,
        match=r"frames/ ended early, after frame 2 \(end of folder: 3 "
        r"images read, 0 unreadable\), with 3 frames presented; "
        r"the annotations go to frame 5",
    ):
        await run()
    with pytest.raises(LiveError, match=r"live: cannot open .*missing\.mp4: no such file"):
        await run(camera="missing.mp4")
    with pytest.raises(
        LiveError, match=r"frames: 7 asked for, but .*truth\.json has ground truth for 6 frames"
    ):
        await run(frames=7)
    _write(tmp_path / "odd.json", {"images": [{"id": i} for i in (1, 3, 5)]})
    with pytest.raises(LiveError, match=r"no annotated frame index .* is a multiple of every: 2"):
        await run(annotations="odd.json", every=2)
    nobody = FakeBoxes([]).presenter()
    stim = LiveStimulus(camera="frames/", annotations="truth.json")
    with pytest.raises(LiveError, match="no device under test"):
        await present_live(nobody, stim, spec_dir=tmp_path, step=1)
    assert boxes.listeners == []


# -- the evaluator bins by the measured conditions ---------------------------------------------


def test_measured_conditions_join_the_breakdown() -> None:
    gt, dets = make_scenes(5, images=60)
    for im in gt["images"][:5]:
        im["conditions"]["brightness"] = 255.0  # annotated, then measured: the measure wins
    ev = DetectionAccuracyEvaluator(
        parse_ground_truth(gt, "gt.json"),
        conditions=["brightness"],
        bins={"brightness": [80.0, 160.0]},
        bootstrap=0,
    )
    rng = np.random.default_rng(0)
    brightness = {im["id"]: float(rng.uniform(0, 255)) for im in gt["images"]}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
    for im in gt["images"]:
        i = im["id"]
        frame = f"run1.live1-{i}"
        ev.observe(FramePresented(frame, i, 1000.0 + i, 2.0))
        ev.observe(FrameConditions(i, {"brightness": brightness[i]}))
        ev.observe(FrameConditions(i, {"brightness": -1.0}))  # a later measure: ignored
        objs = tuple(
            DetectedObject(tuple(d["bbox"]), "signboard", d["score"]) for d in by_image.get(i, [])
        )
        ev.observe(DetectionsObserved("acme/box1", frame, i, 0.0, 1000.1 + i, objs))
    result = ev.result()
    (s,) = result.subjects
    bins = [b for b in s.breakdown if b.condition == "brightness"]
    assert [b.label for b in bins] == [
        "brightness < 80",
        "80 ≤ brightness < 160",
        "brightness ≥ 160",
    ]
    # Each bin holds the ground-truth objects of the images whose measured brightness is in it.
    edges = np.array([80.0, 160.0])
    objects = np.zeros(3, dtype=int)
    for a in gt["annotations"]:
        objects[int(np.searchsorted(edges, brightness[a["image_id"]], side="right"))] += 1
    assert [b.n for b in bins] == objects.tolist()
    assert any(
        "measured brightness replaced the annotation file's values" in n for n in result.notes
    )
