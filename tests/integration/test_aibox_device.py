"""The simulated AI boxes through a real Mosquitto: announce, answer frames, survive garbage,
inject faults, drop the oldest frames under overload, and run from the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from labctl_sim.aibox import AiBox, BoxOptions, BoxSpec, default_boxes, load_register, signsight_s1
from pycocotools import mask as coco_mask  # type: ignore[import-untyped]

from labctl.bus.broker import PrivateBroker
from labctl.protocol import topics
from labctl.protocol.payloads import Detections, Manifest, State, Telemetry
from tests import aibox_synth as synth
from tests.aibox_lab import Listener, Msg, lab, running, until

pytestmark = pytest.mark.integration


@pytest.fixture
def register(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    synth.write_register(root, 6)
    return root


@pytest.fixture
def scene(register: Path) -> synth.Scene:
    return synth.scene([t.image for t in load_register(register)], seed=11, height_px=100)


def stim(spec: BoxSpec, frame: str) -> str:
    return topics.stimulus(spec.vendor, spec.id, frame)


def on(topic: str) -> Callable[[Msg], bool]:
    return lambda m: m.topic == topic


def is_state(spec: BoxSpec, state: str) -> Callable[[Msg], bool]:
    topic = topics.state(spec.vendor, spec.id)
    return lambda m: m.topic == topic and State.model_validate_json(m.payload).state == state


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(coco_mask.iou([list(a)], [list(b)], [0])[0][0])


async def test_boxes_announce_themselves_and_answer_a_frame(
    broker: PrivateBroker, register: Path, scene: synth.Scene
) -> None:
    specs = default_boxes()
    async with lab(broker) as (client, seen):
        async with running(broker, register, specs) as boxes:
            await announced_and_answered(specs, boxes, client, seen, scene)
            sessions = {b.key: b.session for b in boxes}
        for spec in specs:
            offline = await seen.wait(is_state(spec, "offline"), f"{spec.key} offline")
            assert State.model_validate_json(offline.payload).session == sessions[spec.key]


async def announced_and_answered(
    specs: list[BoxSpec], boxes: list[AiBox], client: aiomqtt.Client, seen: Listener,
    scene: synth.Scene,
) -> None:
    for spec, box in zip(specs, boxes, strict=True):
        online = State.model_validate_json(
            (await seen.wait(is_state(spec, "online"), f"{spec.key} online")).payload
        )
        mtopic = topics.manifest(spec.vendor, spec.id)
        manifest = Manifest.model_validate_json(
            (await seen.wait(on(mtopic), "manifest")).payload
        )
        assert manifest.device.model == spec.model and manifest.session == online.session
        assert manifest.session == box.session
        channel = manifest.channel("detections")
        assert channel is not None and channel.unit == "objects" and channel.type == "int"
        order = [m.topic for m in seen.msgs]
        assert order.index(mtopic) < order.index(topics.state(spec.vendor, spec.id))
    refs = {f"SB-{t + 1:04d}" for t, _ in scene.truth}
    sent = time.time()
    for spec in specs:
        await client.publish(stim(spec, "frame-1"), synth.jpeg(scene.image), qos=1)
    for spec in specs:
        dtopic = topics.events(spec.vendor, spec.id, "detections")
        msg = await seen.wait(on(dtopic), f"{spec.key} detections")
        det = Detections.model_validate_json(msg.payload)
        assert det.frame == "frame-1" and det.seq == 0
        assert sent - 1 <= det.ts <= time.time() + 1
        assert {o.ref for o in det.objects} == refs
        for t, truth in scene.truth:
            obj = next(o for o in det.objects if o.ref == f"SB-{t + 1:04d}")
            assert obj.label == "signboard" and 0 < obj.score <= 1
            assert iou(obj.bbox, truth) >= 0.7
    status = await seen.wait(lambda m: m.topic.endswith("/telemetry/status"), "status")
    sample = Telemetry.model_validate_json(status.payload)
    assert set(sample.v) == {"fps", "queue", "dropped"}


async def test_garbage_frames_are_ignored_and_counted(
    broker: PrivateBroker, register: Path, scene: synth.Scene
) -> None:
    spec = signsight_s1()
    async with lab(broker) as (client, seen), running(broker, register, [spec]) as (box,):
        await seen.wait(is_state(spec, "online"), "online")
        await client.publish(stim(spec, "junk"), b"\x00garbage" * 100, qos=1)
        await client.publish(stim(spec, "empty"), b"", qos=1)
        await client.publish(stim(spec, "good"), synth.jpeg(scene.image), qos=1)
        await seen.wait(lambda m: m.topic.endswith("/events/detections"), "detections")
        await asyncio.sleep(0.2)
        assert [(d.frame, d.seq) for d in seen.detections(spec)] == [("good", 0)]
        assert box.stats.undecodable == 2 and box.stats.processed == 1


async def test_manifest_is_republished_when_a_controller_comes_online(
    broker: PrivateBroker, register: Path
) -> None:
    spec = signsight_s1()
    mtopic = topics.manifest(spec.vendor, spec.id)
    async with lab(broker) as (client, seen), running(broker, register, [spec]):
        await seen.wait(is_state(spec, "online"), "online")
        before = sum(m.topic == mtopic for m in seen.msgs)
        await client.publish(topics.controller_state("lab-1"), b'{"state": "online"}', qos=1)
        await seen.wait(lambda m: sum(x.topic == mtopic for x in seen.msgs) > before,
                        "the manifest again")
        again = [m for m in seen.msgs if m.topic == mtopic][-1]
        assert Manifest.model_validate_json(again.payload).device.id == spec.id


async def test_fault_hooks_make_detections_late_and_wrong(
    broker: PrivateBroker, register: Path, scene: synth.Scene
) -> None:
    spec = signsight_s1()
    opts = BoxOptions(extra_delay_s=0.4, misbehave=True)
    async with lab(broker) as (client, seen), running(broker, register, [spec], opts):
        await seen.wait(is_state(spec, "online"), "online")
        sent = time.monotonic()
        await client.publish(stim(spec, "f1"), synth.jpeg(scene.image), qos=1)
        first = await seen.wait(lambda m: m.topic.endswith("/events/detections"), "detections")
        assert first.at - sent >= 0.4
        await seen.wait(lambda m: b"ghost-1" in m.payload, "a detection for an unknown frame")
        real = next(d for d in seen.detections(spec) if d.frame == "f1")
        assert any(o.bbox[0] >= 1280 and o.bbox[1] >= 720 for o in real.objects)
        assert [d.seq for d in seen.detections(spec)] == [0, 1]


async def test_overload_drops_the_oldest_frames(
    broker: PrivateBroker, register: Path, scene: synth.Scene
) -> None:
    spec = signsight_s1()
    opts = BoxOptions(queue_size=1, extra_delay_s=0.3)
    jpeg = synth.jpeg(scene.image)
    async with lab(broker) as (client, seen), running(broker, register, [spec], opts) as (box,):
        await seen.wait(is_state(spec, "online"), "online")
        for i in range(6):
            await client.publish(stim(spec, f"f{i}"), jpeg, qos=1)
        await seen.wait(lambda m: b'"f5"' in m.payload, "the newest frame answered")
        await asyncio.sleep(0.5)
        answered = seen.detections(spec)
    assert answered[-1].frame == "f5"
    assert [d.seq for d in answered] == list(range(len(answered)))
    assert box.stats.received == 6
    assert box.stats.dropped == 6 - len(answered) >= 3


async def test_the_command_line_runs_a_box_until_sigterm(
    broker: PrivateBroker, register: Path, scene: synth.Scene, tmp_path: Path
) -> None:
    spec = BoxSpec(vendor="acme", id="box-1", model="SignSight Edge S1", variant="robust",
                   serial="")
    cmd = [sys.executable, "-m", "labctl_sim.aibox", "--host", broker.host, "--port",
           str(broker.port), "--register", str(register), "--variant", "robust",
           "--vendor", "acme", "--device", "box-1"]
    out = (tmp_path / "aibox.out").open("w+")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; waits go to a thread
        cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        async with lab(broker) as (client, seen):
            await seen.wait(is_state(spec, "online"), "the box online", timeout=20)
            await client.publish(stim(spec, "cli-1"), synth.jpeg(scene.image), qos=1)
            await seen.wait(lambda m: m.topic.endswith("acme/box-1/events/detections"), "answer")
            assert len(seen.detections(spec)[0].objects) == len(scene.truth)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
            await seen.wait(is_state(spec, "offline"), "offline")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
    text = (tmp_path / "aibox.out").read_text()
    assert "online acme/box-1" in text and "offline acme/box-1" in text


async def retained(broker: PrivateBroker, topic: str) -> Msg:
    """What a subscriber arriving now gets on ``topic``: the retained message or, when the box
    publishes it just after the subscription (it has only just connected), the live one."""
    async with lab(broker) as (_, late):
        return await late.wait(lambda m: m.topic == topic, f"retained {topic}")


async def test_a_new_connection_is_a_new_session(
    broker: PrivateBroker, register: Path, scene: synth.Scene
) -> None:
    spec = signsight_s1()
    async with running(broker, register, [spec]) as (box,):
        await until(lambda: box.stats.connects == 1, "connected")
        first = State.model_validate_json(
            (await retained(broker, topics.state(spec.vendor, spec.id))).payload
        )
        assert first.state == "online" and first.session == box.session
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
        async with lab(broker) as (client, seen):
            await seen.wait(lambda m: box.stats.connects == 2 and is_state(spec, "online")(m),
                            "online again")
            manifest = Manifest.model_validate_json(
                (await retained(broker, topics.manifest(spec.vendor, spec.id))).payload
            )
            assert manifest.session == box.session != first.session
            await client.publish(stim(spec, "after"), synth.jpeg(scene.image), qos=1)
            await seen.wait(lambda m: m.topic.endswith("/events/detections"), "detections")
            assert [(d.frame, d.seq) for d in seen.detections(spec)] == [("after", 0)]
