"""Network conditions the lab imposes on the lamppost links: loss, delay and jitter.

Where ``tc netem`` cannot emulate the link (no ``sch_netem`` in the kernel), a trial's
``stimulus: {set: {loss_pct, delay_ms, jitter_ms}}`` is published by the lab, retained, on
``lab/v1/_sim/{rig}/conditions`` (:class:`labctl.trial.conditions.RigConditions`); an empty
retained payload clears them. The fleet listens with one extra MQTT client
(:func:`listen_for_conditions`) and keeps one :class:`SharedConditions` that every node
consults through its :class:`NetworkLink`:

* ``loss_pct`` — each telemetry sample is lost with that probability (never sent; its seq is
  used, so the lab sees a gap), and so is each final command response;
* ``delay_ms`` ± ``jitter_ms`` — each telemetry sample leaves no earlier than its due time plus
  a delay drawn uniformly from ``[delay − jitter, delay + jitter]`` (at least 0), and each
  command response leaves that long after it is ready. A node's responses leave in order, as
  on its one TCP connection.

Every draw is a function of the rig seed, the node key and the sample index (or the command
id and which answer it is), so a seed gives the same losses and delays however the run is
timed. The draws are one BLAKE2b hash each (about a microsecond), made only while a condition
is set: an unconditioned fleet of hundreds of nodes pays one attribute check per sample.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Annotated

import aiomqtt
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.trial.conditions import NETWORK_CONDITIONS, sim_conditions_topic
from labctl_sim.device import Endpoint

log = logging.getLogger(__name__)

MAX_DELAY_MS = 60_000.0
"""Longest delay (and jitter) the simulator applies; larger values are refused as a whole."""
CONDITIONS_FILTER = sim_conditions_topic("+")
"""What the fleet subscribes to: the conditions of any rig (a simulator serves one rig)."""

_Ms = Annotated[float, Field(ge=0.0, le=MAX_DELAY_MS, allow_inf_nan=False)]


class NetworkConditions(BaseModel):
    """The conditions in force; all zero means a perfect link."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    loss_pct: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] = 0.0
    delay_ms: _Ms = 0.0
    jitter_ms: _Ms = 0.0

    @property
    def delaying(self) -> bool:
        """Does any message wait?"""
        return self.delay_ms > 0.0 or self.jitter_ms > 0.0


CLEAR = NetworkConditions()


def parse_conditions(payload: bytes | bytearray | str) -> NetworkConditions | None:
    """The conditions a retained message sets, or None to keep the current ones.

    Empty: cleared (all zero). Not JSON, not an object, a known key with a value out of range
    or not a number: logged and ignored as a whole (a half-applied message would be a
    condition nobody asked for). Unknown keys: logged and ignored; the known ones apply.
    """
    if not payload:
        return CLEAR
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        log.warning("network conditions ignored: not JSON (%s)", exc)
        return None
    if not isinstance(data, dict):
        log.warning("network conditions ignored: expected a JSON object, got %r", data)
        return None
    unknown = sorted(set(data) - NETWORK_CONDITIONS)
    if unknown:
        log.warning("network conditions: ignoring unknown keys %s", ", ".join(unknown))
    known = {k: v for k, v in data.items() if k in NETWORK_CONDITIONS}
    try:
        return NetworkConditions.model_validate(known)
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        log.warning("network conditions ignored: %s", why)
        return None


@dataclass
class SharedConditions:
    """The conditions every node of a fleet consults (replaced whole, never mutated)."""

    current: NetworkConditions = CLEAR
    updates: int = 0
    """Messages applied (tests wait on it)."""
    ignored: int = 0
    """Messages refused by :func:`parse_conditions`."""

    def apply(self, payload: bytes | bytearray | str, topic: str = CONDITIONS_FILTER) -> bool:
        """Apply a conditions message; False if it was refused (the old conditions stay)."""
        new = parse_conditions(payload)
        if new is None:
            self.ignored += 1
            return False
        if new != self.current:
            log.info("network conditions from %s: %s", topic, new.model_dump())
        self.current = new
        self.updates += 1
        return True


def _unit(prefix: bytes, what: str) -> float:
    """A uniform number in [0, 1) from a hash of ``prefix`` and ``what``."""
    digest = hashlib.blake2b(prefix + what.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass
class NetworkLink:
    """One node's view of the shared conditions, with its deterministic draws."""

    shared: SharedConditions
    seed: int
    key: str
    _prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._prefix = f"{self.seed}\x1f{self.key}\x1f".encode()

    @property
    def conditions(self) -> NetworkConditions:
        """What applies right now."""
        return self.shared.current

    def lost(self, k: int) -> bool:
        """Is telemetry sample ``k`` lost? A function of the seed, the key and ``k``."""
        p = self.shared.current.loss_pct
        return p > 0.0 and _unit(self._prefix, f"loss\x1f{k}") * 100.0 < p

    def drop_response(self, command_id: str, label: str) -> bool:
        """Is this final response (``label``: which answer to the command) lost on the way?"""
        p = self.shared.current.loss_pct
        return p > 0.0 and _unit(self._prefix, f"drop\x1f{command_id}\x1f{label}") * 100.0 < p

    def telemetry_delay_s(self, k: int) -> float:
        """How long sample ``k`` travels (seconds)."""
        return self._delay(f"tdelay\x1f{k}")

    def response_delay_s(self, command_id: str, label: str) -> float:
        """How long a response (``label``: which answer to the command it is) travels."""
        return self._delay(f"rdelay\x1f{command_id}\x1f{label}")

    def _delay(self, what: str) -> float:
        c = self.shared.current
        if not c.delaying:
            return 0.0
        u = _unit(self._prefix, what)
        return max(0.0, c.delay_ms + c.jitter_ms * (2.0 * u - 1.0)) / 1000.0


async def listen_for_conditions(
    endpoint: Endpoint,
    shared: SharedConditions,
    *,
    client_id: str,
    backoff_min_s: float = 0.2,
    backoff_max_s: float = 5.0,
) -> None:
    """Keep ``shared`` up to date from the broker until cancelled (reconnecting as needed).

    The conditions are retained, so a (re)connect gets the ones in force at once.
    """
    delay = backoff_min_s
    while True:
        try:
            async with aiomqtt.Client(
                endpoint.host, endpoint.port, identifier=client_id, clean_session=True
            ) as client:
                await client.subscribe(CONDITIONS_FILTER, qos=1)
                delay = backoff_min_s
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray | str):
                        shared.apply(payload, message.topic.value)
                    elif payload is None:
                        shared.apply(b"", message.topic.value)
        except aiomqtt.MqttError as exc:
            log.info("conditions listener: %s; reconnecting in %.1f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(2 * delay, backoff_max_s)
