"""Many lamppost nodes in one process: one asyncio loop, one aiomqtt client per node.

A node costs a few microseconds per sample (see :mod:`labctl_sim.lamppost.model`); what a
fleet adds is pacing the start so hundreds of nodes do not all connect in the same instant
(aiomqtt connects in the loop's default thread pool), and one more client that listens for
the network conditions the lab sets for the rig (:mod:`labctl_sim.lamppost.network`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint
from labctl_sim.lamppost.network import SharedConditions, listen_for_conditions
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
        listen_conditions: bool = True,
    ) -> None:
        """``listen_conditions``: follow the lab's network conditions for the rig on the
        broker (False: the links stay as :attr:`conditions` says; tests set it directly)."""
        self.endpoint = endpoint
        self.options = options or DeviceOptions()
        self.conditions = SharedConditions()
        """Network conditions every node consults."""
        self._listen = listen_conditions
        self.nodes = [
            LamppostNode(
                spec, world, clock, endpoint, seed=seed, span_s=span_s, options=options,
                on_event=on_event, conditions=self.conditions,
            )
            for spec in specs
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Run every node until ``stop`` is set and they have shut down."""
        async with asyncio.TaskGroup() as tg:
            listener = (
                tg.create_task(
                    listen_for_conditions(
                        self.endpoint, self.conditions,
                        client_id=f"sim-conditions-{os.getpid()}-{id(self):x}"[:64],
                        backoff_min_s=self.options.backoff_min_s,
                        backoff_max_s=self.options.backoff_max_s,
                    ),
                    name="network conditions",
                )
                if self._listen
                else None
            )
            nodes = [
                tg.create_task(self._start(node, i / CONNECTS_PER_S, stop), name=node.key)
                for i, node in enumerate(self.nodes)
            ]
            if nodes:
                await asyncio.wait(nodes)
            if listener is not None:
                listener.cancel()

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
