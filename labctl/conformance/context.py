"""What every stage of a conformance run shares: options, the bus, the recorder, the results."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from labctl.bus.mqtt import MqttBus
from labctl.commands import CommandClient, CommandOutcome
from labctl.conformance.catalog import Checklist
from labctl.conformance.recorder import Recorder, Seen
from labctl.protocol import topics
from labctl.protocol.payloads import CommandRequest, Manifest
from labctl.readings import DeviceRef

Say = Callable[[str], None]
"""Progress and prompts for the operator (stderr in the CLI)."""


@dataclass(frozen=True)
class CheckOptions:
    """How a conformance run behaves (``labctl vendor check`` options)."""

    timeout_s: float = 10.0
    """Longest wait for any one reaction of the device (a manifest, a command's answer)."""
    presence_timeout_s: float = 100.0
    """Longest wait for ``offline``, a restart or the Last Will (≥ 1.5 × the keepalive)."""
    window_s: float | None = None
    """Telemetry observation window; None: long enough for 5 samples of the slowest channel
    (2 s at least, 60 s at most)."""
    stop_cmd: str | None = None
    start_cmd: str | None = None
    kill_cmd: str | None = None
    interactive: bool = False
    """Ask the operator to stop, start and kill the device when no command is given."""
    skip: frozenset[str] = frozenset()
    deadline_delay_ms: int = 1500
    """How long the deadline-miss ``noop`` is asked to take…"""
    deadline_timeout_s: float = 0.5
    """…and how long the lab gives it."""
    expired_by_s: float = 30.0
    """How far in the past the deadline of the expired command lies."""


@dataclass
class CheckContext:
    """One conformance run in progress."""

    ref: DeviceRef
    options: CheckOptions
    bus: MqttBus
    recorder: Recorder
    commands: CommandClient
    checklist: Checklist
    say: Say
    check_id: str
    """This run's name on ``_ctl`` and in its client id."""
    manifest: Manifest | None = None
    """The latest manifest the device published."""
    session: str | None = None
    """The device's current session."""
    sessions: list[str] = field(default_factory=list)

    def note_manifest(self, seen: Seen) -> None:
        """Track the device's latest manifest and session."""
        if seen.manifest is not None:
            self.manifest = seen.manifest
            self.session = seen.manifest.session
            if seen.manifest.session not in self.sessions:
                self.sessions.append(seen.manifest.session)

    @property
    def noop_timeout_s(self) -> float:
        """The round-trip timeout for ``noop``: its declared ``timeout_ms``, at most --timeout."""
        spec = None
        if self.manifest is not None:
            spec = next((c for c in self.manifest.commands if c.op == "noop"), None)
        declared = spec.timeout_ms / 1000 if spec else self.options.timeout_s
        return min(declared, self.options.timeout_s)

    async def send(
        self, params: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> CommandOutcome:
        """Send ``noop`` the way the lab does (fresh id, deadline, MQTT 5 expiry)."""
        return await self.commands.send(
            self.ref, "noop", params or {}, timeout_s=timeout_s or self.noop_timeout_s
        )

    async def send_raw(self, command_id: str, params: dict[str, Any], deadline: float) -> None:
        """Publish a ``noop`` request as given, bypassing the command client (which would
        never repeat an id nor send a request whose deadline has passed). No MQTT expiry."""
        req = CommandRequest(id=command_id, op="noop", params=params, deadline=deadline)
        await self.bus.publish(
            topics.command_request(self.ref.vendor, self.ref.device, command_id),
            orjson.dumps(req.model_dump(mode="json")),
            qos=1,
        )

    async def announce(self, state: str) -> None:
        """Say on ``_ctl`` that a controller (this check) is ``state`` — not retained, so
        nothing of the check stays on the broker."""
        payload = orjson.dumps({"state": state, "session": self.check_id, "ts": time.time()})
        await self.bus.publish(topics.controller_state(self.check_id), payload, qos=1)
