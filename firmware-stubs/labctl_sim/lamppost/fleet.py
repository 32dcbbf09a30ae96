"""Many lamppost nodes in one process: one asyncio loop, one aiomqtt client per node.

A node costs a few microseconds per sample (see :mod:`labctl_sim.lamppost.model`); what a
fleet adds is pacing the start so hundreds of nodes do not all connect in the same instant
(aiomqtt connects in the loop's default thread pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint
from labctl_sim.lamppost.node import LamppostNode
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.world import World

CONNECTS_PER_S = 200.0
"""How fast a fleet brings its nodes up."""


class LamppostFleet:
    """The lamppost nodes of a rig, run together until a stop event."""

    def __init__(
        self,
        specs: Sequence[LamppostSpec],
        world: World,
        clock: DeviceClock,
        endpoint: Endpoint,
        *,
        seed: int,
        span_s: float,
        options: DeviceOptions | None = None,
        on_event: Callable[[DeviceEvent], None] | None = None,
    ) -> None:
        self.nodes = [
            LamppostNode(
                spec, world, clock, endpoint, seed=seed, span_s=span_s, options=options,
                on_event=on_event,
            )
            for spec in specs
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Run every node until ``stop`` is set and they have shut down."""
        async with asyncio.TaskGroup() as tg:
            for i, node in enumerate(self.nodes):
                tg.create_task(self._start(node, i / CONNECTS_PER_S, stop), name=node.key)

    @staticmethod
    async def _start(node: LamppostNode, delay_s: float, stop: asyncio.Event) -> None:
        await asyncio.sleep(delay_s)
        await node.run(stop)

    def stats(self) -> dict[str, dict[str, object]]:
        """Per node key: delivery, fault and command counters."""
        out: dict[str, dict[str, object]] = {}
        for node in self.nodes:
            node.stats.unsent = node.buffered
            out[node.key] = node.stats.as_dict()
        return out
