"""Everything one device publishes during a conformance run, validated by the lab's own edge.

The recorder consumes a bus subscribed to one device's topics, passes each message through
:class:`labctl.bus.edge.Edge` on its own (so every message keeps its own verdict), feeds
command responses to the :class:`labctl.commands.CommandClient`, and keeps the lot in arrival
order for the checks to look at. Checks wait on it with :meth:`Recorder.wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from labctl.bus.edge import Edge, EdgeResult
from labctl.bus.mqtt import InboundMessage, MqttBus
from labctl.commands import CommandClient
from labctl.protocol import topics
from labctl.protocol.payloads import Manifest, State
from labctl.readings import DeviceRef


@dataclass(frozen=True, slots=True)
class Seen:
    """One message from the device, with what the edge made of it."""

    index: int
    msg: InboundMessage
    kind: topics.TopicKind | None
    """None for the lab's ``_err`` explanations."""
    result: EdgeResult
    manifest: Manifest | None = None
    """The parsed manifest, whether or not the version rules accepted it."""
    state: State | None = None

    @property
    def at(self) -> float:
        """Arrival time, epoch seconds (lab clock)."""
        return self.msg.received_ns / 1e9

    @property
    def retained(self) -> bool:
        """Delivered from the broker's retained store (on subscribing)."""
        return self.msg.retain

    @property
    def rejected(self) -> bool:
        """The edge refused this message."""
        return bool(self.result.rejections)


def device_subscriptions(ref: DeviceRef) -> tuple[str, ...]:
    """What a check subscribes to: everything the device publishes, and the lab's replies.

    Not ``…/#``: that would echo the check's own command requests back to it.
    """
    root = topics.device_root(ref.vendor, ref.device)
    return (
        f"{root}/manifest",
        f"{root}/state",
        f"{root}/telemetry/+",
        f"{root}/events/+",
        f"{root}/cmd/+/res",
        topics.error(ref.vendor, ref.device),
    )


class Recorder:
    """Consumes the bus until cancelled; keeps every message of the device."""

    def __init__(self, bus: MqttBus, edge: Edge, commands: CommandClient) -> None:
        self.bus = bus
        self.edge = edge
        self.commands = commands
        self.seen: list[Seen] = []
        self.lab_errors: list[str] = []
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        """Consume until cancelled."""
        async for batch in self.bus.batches():
            items = [self._one(m) for m in batch]
            self.bus.ack(batch)
            async with self._changed:
                for item in items:
                    if item is not None:
                        self.seen.append(item)
                        if item.result.replies:
                            self.commands.on_replies(item.result.replies)
                self._changed.notify_all()

    def _one(self, msg: InboundMessage) -> Seen | None:
        if msg.topic.startswith(topics.ROOT + "/_err/"):
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                body = orjson.loads(msg.payload)
                self.lab_errors.append(f"{body.get('reason')}: {body.get('detail')}")
            return None
        try:
            kind: topics.TopicKind | None = topics.parse(msg.topic).kind
        except topics.TopicError:
            kind = None
        result = self.edge.process([msg])
        manifest = state = None
        if kind is topics.TopicKind.MANIFEST and msg.payload:
            with contextlib.suppress(ValidationError):
                manifest = Manifest.model_validate_json(msg.payload)
        elif kind is topics.TopicKind.STATE and msg.payload:
            with contextlib.suppress(ValidationError):
                state = State.model_validate_json(msg.payload)
        return Seen(len(self.seen), msg, kind, result, manifest, state)

    def mark(self) -> int:
        """A position: pass it as ``since`` to look only at what arrives afterwards."""
        return len(self.seen)

    def since(self, start: int, kind: topics.TopicKind | None = None) -> list[Seen]:
        """Messages from position ``start`` on (of ``kind``, if given)."""
        return [s for s in self.seen[start:] if kind is None or s.kind is kind]

    async def wait_for(
        self, match: Callable[[Seen], bool], timeout_s: float, since: int = 0
    ) -> Seen | None:
        """The first message from ``since`` on that matches, waiting up to ``timeout_s``."""
        checked = since

        def find() -> Seen | None:
            nonlocal checked
            while checked < len(self.seen):
                s = self.seen[checked]
                checked += 1
                if match(s):
                    return s
            return None

        found: list[Seen] = []

        def ready() -> bool:
            hit = find()
            if hit is not None:
                found.append(hit)
            return bool(found)

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(ready), max(0.0, timeout_s))
        return found[0] if found else None
