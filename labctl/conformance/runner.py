"""A whole conformance run: connect, run the stages in order, and build the report.

The check is a client of the rig's broker like any controller, with its own client id
(``labctl-check-…``) and no persistent session: it subscribes to one device's topics,
validates everything with the lab's own edge (:class:`labctl.bus.edge.Edge`) and sends
commands with the lab's own :class:`labctl.commands.CommandClient`. It leaves nothing
retained behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Sequence

from labctl.bus.edge import Edge
from labctl.bus.mqtt import MqttBus
from labctl.commands import CommandClient
from labctl.config import Settings
from labctl.conformance.catalog import Checklist, in_stage
from labctl.conformance.context import CheckContext, CheckOptions, Say
from labctl.conformance.recorder import Recorder, device_subscriptions
from labctl.conformance.results import Report
from labctl.conformance.stage_commands import run_command_stage
from labctl.conformance.stage_final import check_messages, check_retained, check_versions
from labctl.conformance.stage_manifest import run_manifest_stage
from labctl.conformance.stage_presence import run_presence_stage
from labctl.conformance.stage_telemetry import run_telemetry_stage
from labctl.drivers import driver_registry
from labctl.readings import DeviceRef
from labctl.rig.directory import DeviceDirectory


class CheckSetupError(Exception):
    """The check cannot start (no broker to talk to); ``str()`` says why."""


def broker_endpoint(settings: Settings) -> tuple[str, int]:
    """Where the rig's broker listens."""
    b = settings.broker
    if b.mode != "external":
        raise CheckSetupError(
            "labctl vendor check talks to the rig's broker, and an embedded broker lives only "
            "inside `labctl run`/`labctl serve`: set broker.mode to external with the broker's "
            "host and port (LABCTL_BROKER__MODE=external LABCTL_BROKER__HOST=… "
            "LABCTL_BROKER__PORT=…)"
        )
    return b.host, b.port


async def run_conformance(
    settings: Settings, ref: DeviceRef, options: CheckOptions, say: Say
) -> Report:
    """Check ``ref`` against ``labctl/1``; raises :class:`labctl.bus.mqtt.BusError` when the
    broker cannot be reached and :class:`CheckSetupError` when there is none configured."""
    host, port = broker_endpoint(settings)
    check_id = f"check-{secrets.token_hex(4)}"
    b = settings.broker

    def connect(suffix: str, subscriptions: Sequence[str]) -> MqttBus:
        return MqttBus(
            host,
            port,
            client_id=f"labctl-{check_id}{suffix}",
            subscriptions=subscriptions,
            username=b.username,
            password=b.password.get_secret_value() if b.password else None,
            keepalive_s=b.keepalive_s,
            session_expiry_s=0,
            connect_timeout_s=min(10.0, options.timeout_s),
        )

    started = time.monotonic()
    checklist = Checklist()
    say(f"checking {ref.key} on {host}:{port} as {check_id}")
    async with connect("", device_subscriptions(ref)) as bus:
        edge = Edge(DeviceDirectory(), driver_registry().get("mqtt-sensor")())

        async def publish(topic: str, payload: bytes, expiry: int | None) -> None:
            await bus.publish(topic, payload, qos=1, expiry_s=expiry)

        commands = CommandClient(publish)
        recorder = Recorder(bus, edge, commands)
        ctx = CheckContext(ref, options, bus, recorder, commands, checklist, say, check_id)
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(recorder.run())
            try:
                await _stages(ctx)
                await check_retained(ctx, connect)
            finally:
                with contextlib.suppress(Exception):
                    await ctx.announce("offline")
                consumer.cancel()
        check_versions(ctx)
        check_messages(ctx)
    return Report(
        ref.key,
        f"{host}:{port}",
        checklist.results(),
        time.monotonic() - started,
        tuple(recorder.lab_errors),
    )


async def _stages(ctx: CheckContext) -> None:
    cl, skip = ctx.checklist, ctx.options.skip
    usable = await run_manifest_stage(ctx)
    for stage, run in (
        ("telemetry", run_telemetry_stage),
        ("commands", run_command_stage),
        ("presence", run_presence_stage),
    ):
        if stage in skip:
            cl.skipped(in_stage(stage), f"--skip {stage}")
        elif not usable:
            cl.not_run(in_stage(stage), "the device is not online with an accepted manifest")
        else:
            await run(ctx)
