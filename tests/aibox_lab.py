"""A test lab for the AI boxes: a listener on everything under ``lab/v1`` and boxes running in
the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from labctl_sim.aibox import AiBox, BoxOptions, BoxSpec, build_boxes

from labctl.bus.broker import PrivateBroker
from labctl.protocol import topics
from labctl.protocol.payloads import Detections


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool
    at: float
    """Arrival, monotonic."""


@dataclass
class Listener:
    """Everything published under ``lab/v1``, in arrival order."""

    client: aiomqtt.Client
    msgs: list[Msg] = field(default_factory=list)

    async def collect(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            self.msgs.append(Msg(m.topic.value, payload, m.retain, time.monotonic()))

    async def wait(self, pred: Callable[[Msg], bool], what: str, timeout: float = 10.0) -> Msg:
        await until(lambda: any(pred(m) for m in self.msgs), what, timeout)
        return next(m for m in self.msgs if pred(m))

    def detections(self, spec: BoxSpec) -> list[Detections]:
        topic = topics.events(spec.vendor, spec.id, "detections")
        return [Detections.model_validate_json(m.payload) for m in self.msgs if m.topic == topic]


@asynccontextmanager
async def lab(broker: PrivateBroker) -> AsyncIterator[tuple[aiomqtt.Client, Listener]]:
    name = f"test-lab-{uuid.uuid4().hex[:8]}"  # two at once must not take over each other
    async with aiomqtt.Client(broker.host, broker.port, identifier=name) as client:
        await client.subscribe("lab/v1/#", qos=1)
        listener = Listener(client)
        task = asyncio.create_task(listener.collect())
        try:
            yield client, listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def running(broker: PrivateBroker, register: Path, specs: list[BoxSpec],
                  options: BoxOptions | None = None) -> AsyncIterator[list[AiBox]]:
    stop = asyncio.Event()
    built = await build_boxes(broker.host, broker.port, register, specs, options)
    async with asyncio.TaskGroup() as tg:
        for box in built:
            tg.create_task(box.run(stop))
        try:
            yield built
        finally:
            stop.set()
