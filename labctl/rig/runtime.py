"""The controller's running parts for one rig: broker (embedded or external), spool, bus, edge,
device directory, TSDB sinks, command client and reservations.

``labctl run`` opens one for the duration of a run; ``labctl serve`` keeps one open and hosts
runs on it. Either way the data path is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from labctl.bus.broker import PrivateBroker
from labctl.bus.edge import Edge, EdgeResult
from labctl.bus.mqtt import MqttBus, Will
from labctl.commands import CommandClient
from labctl.config import Settings
from labctl.controller import Controller
from labctl.drivers import driver_registry
from labctl.gc_tuning import tune_for_ingest
from labctl.metrics.points import PointEncoder, RunTags
from labctl.metrics.spool_link import SpoolLink
from labctl.protocol import topics
from labctl.readings import DeviceRef
from labctl.rig.directory import DeviceDirectory
from labctl.rig.reservations import Reservations
from labctl.serialio.rig import SerialRig


@dataclass
class RigRuntime:
    """Everything a run or the long-running controller uses to talk to the rig."""

    settings: Settings
    host: str
    port: int
    spool: SpoolLink
    directory: DeviceDirectory
    edge: Edge
    bus: MqttBus
    controller: Controller
    commands: CommandClient
    reservations: Reservations
    encoder: PointEncoder
    serial: SerialRig | None = None
    """The rig's configured serial devices, open for the runtime's whole life."""
    events: list[Callable[[EdgeResult], None]] = field(default_factory=list)

    def role_of(self, ref: DeviceRef) -> str:
        """The rig role of a device (config), ``default_role`` when unlisted."""
        return self.settings.rig.roles.get(ref.key, self.settings.rig.default_role)

    def tags_of(self, ref: DeviceRef) -> RunTags:
        """The run a device's points belong to right now."""
        h = self.reservations.holder(ref.key)
        return RunTags(h.run, h.trial)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    reservations: Reservations,
    *,
    client_suffix: str = "",
    will: Will | None = None,
) -> AsyncIterator[RigRuntime]:
    """Start the parts in order, yield, and stop them in reverse; tasks run in a TaskGroup."""
    s = settings
    async with AsyncExitStack() as stack:
        host, port = s.broker.host, s.broker.port
        if s.broker.mode == "embedded":
            broker = PrivateBroker(s.broker_dir)
            await asyncio.to_thread(_fresh_broker_dir, s.broker_dir)
            await asyncio.to_thread(broker.start)
            stack.callback(broker.stop)
            host, port = broker.host, broker.port
        spool = SpoolLink(
            s.spool_dir, segment_bytes=s.metrics.segment_bytes, endpoints=list(s.metrics.influx)
        )
        await stack.enter_async_context(spool)
        directory = DeviceDirectory()
        edge = Edge(directory, driver_registry().get("mqtt-sensor")())
        bus = MqttBus(
            host,
            port,
            client_id=f"labctl-{s.controller}{client_suffix}"[:64],
            subscriptions=topics.DEVICE_SUBSCRIPTIONS,
            username=s.broker.username,
            password=s.broker.password.get_secret_value() if s.broker.password else None,
            will=will,
            keepalive_s=s.broker.keepalive_s,
            session_expiry_s=s.broker.session_expiry_s,
            receive_maximum=s.broker.max_inflight,
        )
        await stack.enter_async_context(bus)
        rt_holder: list[RigRuntime] = []
        encoder = PointEncoder(
            s.rig.name,
            lambda ref: rt_holder[0].role_of(ref),
            lambda ref: rt_holder[0].tags_of(ref),
        )
        controller = Controller(bus, edge, spool, encoder)

        async def publish(topic: str, payload: bytes, expiry: int | None) -> None:
            await bus.publish(topic, payload, qos=1, expiry_s=expiry)

        commands = CommandClient(publish)
        controller.listeners.append(lambda r: commands.on_replies(r.replies) if r.replies else None)
        rt = RigRuntime(
            s, host, port, spool, directory, edge, bus, controller, commands, reservations, encoder
        )
        rt_holder.append(rt)
        if s.rig.serial:
            # Real serial devices belong to the rig, not to a run: under `labctl serve` they
            # are read (and listed) between runs too.
            rt.serial = SerialRig(directory, controller.accept_local)
            await stack.enter_async_context(rt.serial.running(s.rig.serial))
        tune_for_ingest()
        async with asyncio.TaskGroup() as tg:
            ingest = tg.create_task(controller.ingest())
            replies = tg.create_task(controller.error_replies())
            try:
                yield rt
            finally:
                ingest.cancel()
                replies.cancel()


def _fresh_broker_dir(directory: Path) -> None:
    """The embedded broker is private to one controller process: no stale persistence."""
    db = directory / "mosquitto.db"
    if db.exists():
        db.unlink()
