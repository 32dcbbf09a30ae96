"""A misbehaving AI box through the real broker, edge, router and evaluator: detections for
frames never presented, boxes outside the image, unknown labels, NaN scores and late answers
are counted and excluded as stated; the trial's numbers come from the valid answers only."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from labctl.bus.broker import PrivateBroker
from labctl.config import load_settings
from labctl.evaluators.base import Subject
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator
from labctl.readings import DeviceRef
from labctl.rig.reservations import Reservations
from labctl.rig.runtime import open_runtime
from labctl.scenes import make_dataset
from labctl.trial.replay import FramePresenter
from labctl.trial.router import ReadingRouter
from labctl.trial.spec import ReplayStimulus, parse_spec

BOX = DeviceRef("rogue", "box-1")
ROOT = "lab/v1/rogue/box-1"
DEADLINE_S = 1.0


class RogueBox:
    """Answers frame k (1-based image id order) as the test needs:

    1: the true boxes plus a detection for a frame never presented and a box far outside
    2: a payload with a NaN score (the edge must reject it: the frame goes unanswered)
    3: the true boxes, but after the deadline
    4: the true boxes labelled "dog" (a label the trial does not know)
    5: the true boxes
    """

    def __init__(self, broker: PrivateBroker, truth: dict[int, list[list[float]]]) -> None:
        self.truth = truth
        self.seq = 0
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue-box-1")
        self.c.on_message = self._on
        self.c.connect(broker.host, broker.port)
        manifest = {
            "schema": "labctl/1",
            "version": 1,
            "session": "s1",
            "device": {"vendor": "rogue", "id": "box-1", "model": "R1", "serial": "R-1"},
            "channels": [{"name": "detections", "unit": "objects", "type": "int", "rate_hz": 5}],
        }
        self.c.publish(f"{ROOT}/manifest", orjson.dumps(manifest), qos=1, retain=True)
        self.c.publish(f"{ROOT}/state", b'{"state":"online","session":"s1"}', qos=1, retain=True)
        self.c.subscribe(f"{ROOT}/stim/+", qos=1)
        self.c.loop_start()

    def _send(self, frame: str, objects: list[dict[str, Any]], raw: bytes | None = None) -> None:
        self.seq += 1
        body = raw or orjson.dumps(
            {"seq": self.seq, "ts": time.time(), "frame": frame, "objects": objects}
        )
        self.c.publish(f"{ROOT}/events/detections", body, qos=1)

    def _on(self, c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        frame = m.topic.rsplit("/", 1)[1]
        k = int(frame.rsplit(".", 1)[1])
        true = [
            {"bbox": b, "label": "signboard", "score": 0.9, "ref": None} for b in self.truth[k]
        ]
        if k == 1:
            self._send("never-presented", true)
            self._send(frame, [*true, {"bbox": [5000, 5000, 50, 20], "label": "signboard",
                                       "score": 0.8}])
        elif k == 2:
            nan = b'{"seq": 99, "ts": 1800000000.0, "frame": "%s", "objects": [{"bbox": [1, 1, 9,' \
                  b' 9], "label": "signboard", "score": NaN}]}' % frame.encode()
            self._send(frame, [], raw=nan)
        elif k == 3:
            threading.Timer(DEADLINE_S + 0.5, self._send, (frame, true)).start()
        elif k == 4:
            self._send(frame, [{**o, "label": "dog"} for o in true])
        else:
            self._send(frame, true)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


async def test_bad_detections_are_counted_and_excluded(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    dataset = make_dataset(tmp_path / "scenes", count=5, seed=3, conditions="benign")
    gt = orjson.loads((tmp_path / "scenes" / "annotations.json").read_bytes())
    truth: dict[int, list[list[float]]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        truth[a["image_id"]].append(a["bbox"])
    assert len(truth) == 5 and dataset.root.is_dir()
    spec = parse_spec(
        "trial: t\ntitle: t\nkind: detection-accuracy\n"
        "devices: {boxes: {role: dut, channel: detections}}\n"
        f"options: {{dataset: '{tmp_path / 'scenes'}'}}\n"
        "criteria: {recall: {min: 0.5}}\nphases: [{name: r, steps: [{wait: 1s}]}]\n",
        tmp_path / "t.yaml",
    ).spec
    settings = load_settings(
        data_dir=tmp_path / "data",
        controller="ctl-det",
        broker={"mode": "external", "host": broker.host, "port": broker.port},
    )
    box = RogueBox(broker, truth)
    events: list[str] = []
    try:
        async with open_runtime(settings, Reservations()) as rt:
            evaluator = DetectionAccuracyEvaluator.from_spec(
                spec, [Subject(BOX.key, "dut", BOX.vendor, BOX.device, "R1")]
            )
            router = ReadingRouter()
            rt.controller.listeners.append(router)
            router.start(evaluator, {BOX: BOX.key})
            presenter = FramePresenter(
                rt.bus.publish,
                router.observe,
                rt.controller.listeners,
                [BOX],
                "run1",
                events.append,
                lambda: None,
            )
            await presenter.present(tmp_path / "scenes", ReplayStimulus(deadline=DEADLINE_S))
            await rt.controller.quiet(1.0, 5)  # the late answer to frame 3 arrives
            result = evaluator.result()
            rejected = dict(rt.edge.counters.rejected)
    finally:
        box.stop()
    [s] = result.subjects
    m = {x.name: x.value for x in s.metrics}
    assert m["frames"] == 5
    assert m["unknown_frames"] == 1  # "never-presented"
    assert m["boxes_outside"] == 1  # the box at x = 5000
    assert m["unknown_labels"] == len(truth[4])  # every "dog"
    assert m["late_messages"] == 1 and m["unanswered_frames"] == 1  # frames 3 and 2
    assert m["missed_deadlines"] == 2
    assert rejected.get("json", 0) + rejected.get("schema", 0) == 1  # the NaN payload
    # Recall counts only what was validly answered in time: frames 1 and 5.
    answered = len(truth[1]) + len(truth[5])
    assert m["recall"] == answered / sum(len(v) for v in truth.values())
    assert m["precision"] == 1.0
