"""An AI camera box on MQTT (labctl/1): frames in on ``stim/{frame}``, detections out.

The box announces itself like every simulated device (retained manifest before a retained
``online``, Last Will ``lost``, a new session on every connect, the manifest again whenever a
controller comes online, ``offline`` at stop). Frames go into a bounded queue; one worker
decodes and detects them off the event loop (a thread), so the box answers at the pace its
detector allows and drops the oldest frames when it falls behind — as a real box does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Literal

import aiomqtt
import orjson

from labctl.protocol import topics
from labctl.protocol.payloads import (
    ChannelSpec,
    DetectedObject,
    Detections,
    DeviceIdentity,
    Manifest,
    State,
    Telemetry,
)
from labctl_sim.aibox.detector import Found, SignDetector
from labctl_sim.aibox.frames import Frame, FrameQueue, decode, frame_from
from labctl_sim.aibox.spec import LABEL, BoxOptions, BoxSpec, BoxStats
from labctl_sim.device import DeviceEvent, Endpoint

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
STATUS_STREAM = "status"
DETECTIONS = "detections"


class AiBox:
    """One simulated AI box; run it with :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        spec: BoxSpec,
        detector: SignDetector,
        endpoint: Endpoint,
        options: BoxOptions | None = None,
        on_event: Callable[[DeviceEvent], None] | None = None,
    ) -> None:
        if detector.config.name != spec.variant:
            raise ValueError(f"{spec.key} is a {spec.variant} box, got a {detector.config.name} "
                             "detector")
        self.spec = spec
        self.detector = detector
        self.endpoint = endpoint
        self.options = options or BoxOptions()
        self.stats = BoxStats()
        self.frames = FrameQueue(self.options.queue_size)
        self._on_event = on_event or (lambda _e: None)
        self._session = ""
        self._seq = 0
        self._status_seq = 0
        self._ghosts = 0
        self._topic_manifest = topics.manifest(spec.vendor, spec.id)
        self._topic_state = topics.state(spec.vendor, spec.id)
        self._topic_detections = topics.events(spec.vendor, spec.id, DETECTIONS)
        self._topic_status = topics.telemetry(spec.vendor, spec.id, STATUS_STREAM)
        self._topic_stim = f"{topics.device_root(spec.vendor, spec.id)}/stim/+"

    @property
    def key(self) -> str:
        """``vendor/id``."""
        return self.spec.key

    @property
    def client_id(self) -> str:
        """The MQTT client id: ``sim-{vendor}-{device}``."""
        return f"sim-{self.spec.vendor}-{self.spec.id}"

    @property
    def session(self) -> str:
        """The current (or last) session; empty before the first connect."""
        return self._session

    def now(self) -> float:
        """The device clock, epoch seconds."""
        return time.time() + self.options.clock_offset_s

    # --- payloads -------------------------------------------------------------------------

    def manifest(self, session: str) -> Manifest:
        """The box's self-description for ``session``."""
        s, period = self.spec, self.options.status_interval_s
        return Manifest(
            schema_="labctl/1", version=MANIFEST_VERSION, session=session,
            device=DeviceIdentity(vendor=s.vendor, id=s.id, model=s.model, serial=s.serial,
                                  hw_version=s.hw_version, sw_version=s.sw_version),
            channels=[
                ChannelSpec(name=DETECTIONS, unit="objects", type="int", rate_hz=s.rate_hz),
                ChannelSpec(name="fps", unit="Hz", type="float", rate_hz=1 / period),
                ChannelSpec(name="queue", unit="frames", type="int", rate_hz=1 / period),
                ChannelSpec(name="dropped", unit="frames", type="int", rate_hz=1 / period),
            ],
        )

    def _state(self, state: Literal["online", "offline", "lost"], session: str) -> bytes:
        return State(state=state, session=session, ts=self.now()).model_dump_json().encode()

    def detections(self, frame: str, found: list[Found], size: tuple[int, int]) -> Detections:
        """The next ``Detections`` of this session for ``frame`` (``size`` = width, height)."""
        objects = [
            DetectedObject(bbox=_box(f.bbox), label=LABEL, score=float(f.score), ref=f.ref)
            for f in found
        ]
        if self.options.misbehave:  # a box outside the image
            objects.append(DetectedObject(bbox=(size[0] + 10.0, size[1] + 10.0, 40.0, 20.0),
                                          label=LABEL, score=0.5, ref=None))
        seq, self._seq = self._seq, self._seq + 1
        return Detections(seq=seq, ts=self.now(), frame=frame, objects=objects)

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (again and again, with backoff) and serve frames until ``stop`` is set."""
        delay = self.options.backoff_min_s
        while not stop.is_set():
            try:
                await self._connection(stop)
                return
            except* (aiomqtt.MqttError, OSError) as group:
                reason = "; ".join(str(e) for e in group.exceptions)
                self._on_event(DeviceEvent("disconnected", self.key, self._session, reason))
                log.info("%s: connection lost or refused (%s); retrying in %.1f s",
                         self.key, reason, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.options.backoff_max_s)

    async def _connection(self, stop: asyncio.Event) -> None:
        session = uuid.uuid4().hex[:12]
        client = aiomqtt.Client(
            self.endpoint.host, self.endpoint.port, identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5, clean_start=True,
            will=aiomqtt.Will(self._topic_state, self._state("lost", session), qos=1, retain=True),
            keepalive=self.options.keepalive_s, timeout=self.options.publish_timeout_s,
        )
        async with client:
            self._session, self._seq, self._status_seq = session, 0, 0
            self.stats.connects += 1
            manifest = self.manifest(session).model_dump_json(by_alias=True).encode()
            await client.publish(self._topic_manifest, manifest, qos=1, retain=True)
            await client.publish(self._topic_state, self._state("online", session), qos=1,
                                 retain=True)
            await client.subscribe(topics.controller_state("+"), qos=1)
            await client.subscribe(self._topic_stim, qos=1)
            self._on_event(DeviceEvent("online", self.key, session))
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._listen(client, manifest)),
                    tg.create_task(self._work(client)),
                    tg.create_task(self._report(client)),
                ]
                # A broker that goes away fails a task, which cancels this wait and raises.
                await stop.wait()
                for task in tasks:
                    task.cancel()
            await client.publish(self._topic_state, self._state("offline", session), qos=1,
                                 retain=True)
            self._on_event(DeviceEvent("offline", self.key, session))

    async def _listen(self, client: aiomqtt.Client, manifest: bytes) -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic.startswith(f"{topics.ROOT}/_ctl/"):
                if not message.retain and _says_online(message.payload):
                    await client.publish(self._topic_manifest, manifest, qos=1, retain=True)
                continue
            self.stats.received += 1
            frame = None if message.retain else frame_from(topic, message.payload)
            if frame is None:  # a retained stimulus is stale; an invalid id has no answer
                self.stats.bad_topic += 1
                log.info("%s: ignoring stimulus on %s", self.key, topic)
                continue
            if not self.frames.put(frame):
                self.stats.dropped += 1

    async def _work(self, client: aiomqtt.Client) -> None:
        while True:
            frame = await self.frames.get()
            started = time.perf_counter()
            result = await asyncio.to_thread(self._process, frame)
            self.stats.busy_s += time.perf_counter() - started
            if result is None:
                self.stats.undecodable += 1
                log.warning("%s: frame %s is not an image; ignored", self.key, frame.id)
                continue
            found, size = result
            self.stats.processed += 1
            if self.options.extra_delay_s > 0:
                await asyncio.sleep(self.options.extra_delay_s)
            payload = self.detections(frame.id, found, size).model_dump_json().encode()
            await client.publish(self._topic_detections, payload, qos=1)
            self.stats.published += 1
            if self.options.misbehave:
                self._ghosts += 1
                ghost = self.detections(f"ghost-{self._ghosts}", found, size)
                await client.publish(self._topic_detections, ghost.model_dump_json().encode(),
                                     qos=1)

    def _process(self, frame: Frame) -> tuple[list[Found], tuple[int, int]] | None:
        image = decode(frame.payload, self.options.max_frame_bytes)
        if image is None:
            return None
        return self.detector.detect(image), (int(image.shape[1]), int(image.shape[0]))

    async def _report(self, client: aiomqtt.Client) -> None:
        period = self.options.status_interval_s
        last = self.stats.processed
        while True:
            await asyncio.sleep(period)
            done, last = self.stats.processed - last, self.stats.processed
            v = {"fps": done / period, "queue": float(len(self.frames)),
                 "dropped": float(self.stats.dropped)}
            msg = Telemetry(session=self._session, seq=self._status_seq, ts=self.now(), v=v)
            self._status_seq += 1
            await client.publish(self._topic_status, msg.model_dump_json().encode(), qos=1)


def _box(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _says_online(payload: object) -> bool:
    if not isinstance(payload, bytes | str):
        return False
    try:
        announced = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(announced, dict) and announced.get("state") == "online"
