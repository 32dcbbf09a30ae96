"""Rig conditions a trial sets (``stimulus: {set: {...}}``): network loss, delay and jitter.

Where the machine allows it, network conditions belong on an emulated link (Linux network
namespaces with ``tc netem``) between the simulated nodes and the broker. Where it does not
(no ``sch_netem`` in the kernel, no CAP_NET_ADMIN), the simulated rig applies them with its
own fault injection: the lab publishes the conditions, retained, on
``lab/v1/_sim/{rig}/conditions`` and the simulator applies them to every node. Either way the
method is recorded and the report says which one was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from labctl.protocol.topics import ROOT

log = logging.getLogger(__name__)

NETWORK_CONDITIONS = frozenset({"loss_pct", "delay_ms", "jitter_ms"})
"""Conditions the rig knows how to impose; others are recorded as labels only."""


def sim_conditions_topic(rig: str) -> str:
    """Where a simulated rig listens for the conditions to apply."""
    return f"{ROOT}/_sim/{rig}/conditions"


class RetainedPublish(Protocol):
    """The bus's publish with the options the conditions need."""

    async def __call__(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and wait for the broker's acknowledgement."""


class ConditionError(RuntimeError):
    """A condition the rig cannot impose; the message says why."""


@dataclass
class RigConditions:
    """Applies conditions to the rig for a run."""

    publish: RetainedPublish
    rig: str
    simulated: bool
    applied: dict[str, float] = field(default_factory=dict)
    method: str = ""

    async def apply(self, conditions: Mapping[str, float]) -> str:
        """Impose ``conditions``; returns how (``simulator``, ``label``)."""
        for k, v in conditions.items():
            if k in ("loss_pct",) and not 0 <= v <= 100:
                raise ConditionError(f"{k} must be 0–100, got {v:g}")
            if k in ("delay_ms", "jitter_ms") and v < 0:
                raise ConditionError(f"{k} must be ≥ 0, got {v:g}")
        network = {k: v for k, v in conditions.items() if k in NETWORK_CONDITIONS}
        self.applied.update(conditions)
        if not network:
            return "label"
        if not self.simulated:
            raise ConditionError(
                "network conditions on a real rig need an emulated link (tc netem) between "
                "the devices and the broker, which labctl does not manage for real devices; "
                f"set them on the lab network and record them as labels instead: {dict(network)}"
            )
        if not self.method:
            why = await netem_available()
            self.method = (
                f"simulator fault injection (tc netem unavailable here: {why})"
                if why
                else "simulator fault injection (tc netem works here, but simulated nodes "
                "are not yet placed in network namespaces)"
            )
        payload = orjson.dumps({k: v for k, v in self.applied.items() if k in NETWORK_CONDITIONS})
        await self.publish(sim_conditions_topic(self.rig), payload, qos=1, retain=True)
        return self.method

    async def clear(self) -> None:
        """Remove the conditions (teardown): an empty retained message clears the topic."""
        if self.simulated and self.applied:
            with contextlib.suppress(Exception):
                await self.publish(sim_conditions_topic(self.rig), b"", qos=1, retain=True)
        self.applied.clear()


async def netem_available() -> str | None:
    """None when ``tc netem`` works in a fresh network namespace here, else why not."""
    name = f"labctl-probe-{secrets.token_hex(3)}"
    try:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            f"ip netns add {name} && ip netns exec {name} ip link set lo up && "
            f"ip netns exec {name} tc qdisc add dev lo root netem delay 1ms; "
            f"rc=$?; ip netns del {name}; exit $rc",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    except (OSError, TimeoutError) as exc:
        return f"cannot run ip/tc: {exc}"
    if proc.returncode != 0:
        return err.decode(errors="replace").strip() or f"exit code {proc.returncode}"
    return None
