"""Commands to devices: correlation, deadlines, idempotency, late responses.

A command is correlated by the ``id`` in its payload (and topic), so MQTT 3.1.1 devices work
too; on MQTT 5 the request also carries a message expiry equal to the deadline, so a broker
does not deliver a command after it stopped mattering. A broker PUBACK is not a device's
acknowledgement: only the device's ``accepted``/final responses count. Sending the same id
twice runs the command once (the second call returns the first outcome). A response that
arrives after its deadline is logged and counted, never applied.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from labctl.bus.edge import CommandReply
from labctl.protocol import topics
from labctl.protocol.payloads import CommandRequest
from labctl.readings import DeviceRef

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int | None], Awaitable[None]]
"""Publish ``payload`` on ``topic`` at QoS 1 with an optional MQTT 5 expiry in seconds."""

Status = Literal["succeeded", "failed", "rejected", "timeout"]


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended."""

    id: str
    device: str
    op: str
    status: Status
    accepted: bool
    """The device said ``accepted`` before its final answer."""
    published_at: float
    finished_at: float
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float:
        """Request published → final response (or the deadline, for a timeout)."""
        return self.finished_at - self.published_at


@dataclass
class _Pending:
    device: DeviceRef
    op: str
    published_at: float
    deadline: float
    done: asyncio.Future[CommandOutcome]
    accepted: bool = False


@dataclass
class CommandStats:
    """Counters a trial or a conformance check reports."""

    sent: int = 0
    late: int = 0
    duplicate_responses: int = 0
    unknown: int = 0
    wrong_device: int = 0
    late_ids: list[str] = field(default_factory=list)


class CommandClient:
    """Sends commands and matches responses; feed it with :meth:`on_replies`."""

    def __init__(
        self, publish: Publish, clock: Callable[[], float] = time.time, remember: int = 10_000
    ) -> None:
        self._publish = publish
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._finished: OrderedDict[str, CommandOutcome] = OrderedDict()
        self._remember = remember
        self.stats = CommandStats()

    @staticmethod
    def new_id() -> str:
        """A fresh command id."""
        return secrets.token_hex(8)

    async def send(
        self,
        device: DeviceRef,
        op: str,
        params: dict[str, Any] | None = None,
        *,
        timeout_s: float = 5.0,
        command_id: str | None = None,
    ) -> CommandOutcome:
        """Send a command and wait for its final response or its deadline."""
        cid = command_id or self.new_id()
        if cid in self._finished:  # idempotent: the same id never runs twice
            return self._finished[cid]
        if cid in self._pending:
            return await asyncio.shield(self._pending[cid].done)
        now = self._clock()
        req = CommandRequest(id=cid, op=op, params=params or {}, deadline=now + timeout_s)
        fut: asyncio.Future[CommandOutcome] = asyncio.get_running_loop().create_future()
        pending = _Pending(device, op, now, req.deadline, fut)
        self._pending[cid] = pending
        try:
            await self._publish(
                topics.command_request(device.vendor, device.device, cid),
                orjson.dumps(req.model_dump(mode="json")),
                max(1, math.ceil(timeout_s)),
            )
            self.stats.sent += 1
            remaining = max(0.0, req.deadline - self._clock())
            try:
                return await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                outcome = CommandOutcome(
                    cid,
                    device.key,
                    op,
                    "timeout",
                    pending.accepted,
                    now,
                    req.deadline,
                    error=f"no final response within {timeout_s:g} s",
                )
                self._finish(cid, outcome)
                return outcome
        finally:
            self._pending.pop(cid, None)

    def on_replies(self, replies: Sequence[CommandReply]) -> None:
        """Match responses to commands (a controller listener calls this)."""
        for reply in replies:
            res = reply.response
            pending = self._pending.get(res.id)
            if pending is None:
                if res.id in self._finished:
                    self.stats.late += 1
                    self.stats.late_ids.append(res.id)
                    del self.stats.late_ids[:-100]
                    log.warning(
                        "late %s response to command %s from %s: logged, not applied",
                        res.status,
                        res.id,
                        reply.device.key,
                    )
                else:
                    self.stats.unknown += 1
                    log.info("response to unknown command %s from %s", res.id, reply.device.key)
                continue
            if reply.device != pending.device:
                self.stats.wrong_device += 1
                log.warning(
                    "%s answered command %s sent to %s: ignored",
                    reply.device.key,
                    res.id,
                    pending.device.key,
                )
                continue
            if pending.done.done():
                self.stats.duplicate_responses += 1
                continue
            if res.status == "accepted":
                pending.accepted = True
                continue
            now = reply.received_ns / 1e9
            if now > pending.deadline:
                continue  # the wait_for timeout records it; arriving late is not success
            err = f"{res.error.code}: {res.error.message}" if res.error else None
            outcome = CommandOutcome(
                res.id,
                pending.device.key,
                pending.op,
                res.status,
                pending.accepted,
                pending.published_at,
                now,
                res.result,
                err,
            )
            self._finish(res.id, outcome)
            pending.done.set_result(outcome)

    def _finish(self, cid: str, outcome: CommandOutcome) -> None:
        self._finished[cid] = outcome
        while len(self._finished) > self._remember:
            self._finished.popitem(last=False)
