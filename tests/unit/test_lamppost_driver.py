"""The ``lamppost`` driver: registration, decoding, command models validated before sending,
and agreement with the simulated node (channels, commands, parameters)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from labctl_drivers.lamppost import (
    CHANNELS,
    COMMANDS,
    STREAM,
    GetStatus,
    Lamppost,
    LamppostDriver,
    Reboot,
    Republish,
    SchedulePeriod,
    SetLevel,
    SetSchedule,
    parse_command,
)
from labctl_sim.lamppost import model as sim_model
from labctl_sim.lamppost.commands import PARAMS, Rejection, validate
from pydantic import ValidationError

from labctl.commands import CommandClient
from labctl.drivers import driver_registry
from labctl.protocol.inbound import decode_batch
from labctl.protocol.payloads import ChannelSpec, DeviceIdentity, Manifest
from labctl.readings import DeviceRef

DEV = DeviceRef("lumenta", "lx60-0001")


class Wire:
    """A fake publish: records requests (a unit test needs no broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, topic: str, payload: bytes, expiry: int | None) -> None:
        self.sent.append((topic, orjson.loads(payload)))


def _manifest(names: list[str]) -> Manifest:
    return Manifest(
        schema_="labctl/1", version=1, session="s1",
        device=DeviceIdentity(vendor=DEV.vendor, id=DEV.device, model="LX-60", serial="1"),
        channels=[ChannelSpec(name=n, unit="", rate_hz=1.0) for n in names],
    )


def test_registered_through_the_entry_point() -> None:
    assert driver_registry().get("lamppost") is LamppostDriver


def test_channels_and_commands_agree_with_the_simulated_node() -> None:
    assert [(c.name, c.unit, c.type) for c in CHANNELS] == list(sim_model.CHANNELS)
    assert set(COMMANDS) == set(PARAMS)


def test_decode_keeps_declared_channels_and_refuses_impossible_values() -> None:
    driver = LamppostDriver()
    manifest = _manifest([c.name for c in CHANNELS])
    body = orjson.dumps({"session": "s1", "samples": [
        {"seq": 0, "ts": 1.78e9, "v": {"level": 40, "lamp_on": 1, "power": 29.1}},
        {"seq": 1, "ts": 1.78e9 + 1, "v": {"level": 40, "lamp_on": 1, "power": 29.0}},
    ]})
    samples = decode_batch(body)[1]
    readings = driver.decode(DEV, manifest, STREAM, "s1", samples, 5)
    assert [(r.seq, r.values["power"]) for r in readings] == [(0, 29.1), (1, 29.0)]
    bad = decode_batch(orjson.dumps({"session": "s1", "samples": [
        {"seq": 2, "ts": 1.78e9, "v": {"level": 150}}]}))[1]
    with pytest.raises(ValueError, match=r"level = 150 is outside 0…100"):
        driver.decode(DEV, manifest, STREAM, "s1", bad, 5)
    undeclared = decode_batch(orjson.dumps({"session": "s1", "samples": [
        {"seq": 3, "ts": 1.78e9, "v": {"level": 1, "lux": 3}}]}))[1]
    with pytest.raises(ValueError, match="lux not declared"):
        driver.decode(DEV, manifest, STREAM, "s1", undeclared, 5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SetLevel(level=150), "less than or equal to 100"),
        (lambda: SetLevel(level=-5), "greater than or equal to 0"),
        (lambda: SetLevel(level="50"), "valid integer"),  # type: ignore[arg-type]
        (lambda: SetLevel.model_validate({"level": 5, "fade_s": 2}), "Extra inputs"),
        (lambda: parse_command("set_schedule", {"periods": [], "lat": 1.0, "lon": 1.0}),
         "at least 1"),
        (lambda: SchedulePeriod.model_validate({"from": "dusk", "to": "dusk", "level": 1}),
         "is empty"),
        (lambda: SchedulePeriod.model_validate({"from": "7pm", "to": "dawn", "level": 1}),
         "pattern"),
        (lambda: parse_command("fly"), "no command 'fly'"),
    ],
)
def test_command_models_validate(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


async def test_api_validates_before_sending_and_sends_the_wire_names() -> None:
    wire = Wire()
    client = CommandClient(wire)
    lamp = Lamppost(client, DEV, timeout_s=0.05)
    with pytest.raises(ValidationError):
        await lamp.set_level(150)
    with pytest.raises(ValidationError):
        await lamp.set_schedule([{"from": "dusk", "to": "dawn", "level": 50}], lat=95, lon=0)
    assert wire.sent == [] and client.stats.sent == 0

    out = await lamp.set_level(60)  # nobody answers the fake wire: a timeout, but it was sent
    assert out.status == "timeout" and not out.accepted
    await lamp.set_schedule(
        [SchedulePeriod.model_validate({"from": "dusk", "to": "00:00", "level": 100}),
         {"from": "00:00", "to": "dawn", "level": 40}],
        lat=22.3, lon=114.17,
    )
    for cmd in (GetStatus(), Reboot(), Republish()):
        await lamp.send(cmd, timeout_s=0.01)
    topics = [t for t, _ in wire.sent]
    assert all(t.startswith("lab/v1/lumenta/lx60-0001/cmd/") and t.endswith("/req")
               for t in topics)
    ops = [(p["op"], p["params"]) for _, p in wire.sent]
    assert ops == [
        ("set_level", {"level": 60}),
        ("set_schedule", {"periods": [{"from": "dusk", "to": "00:00", "level": 100},
                                      {"from": "00:00", "to": "dawn", "level": 40}],
                          "lat": 22.3, "lon": 114.17}),
        ("get_status", {}), ("reboot", {}), ("republish", {}),
    ]
    # What the driver sends, the node accepts; what the driver refuses, the node refuses too.
    for op, params in ops:
        validate(op, params)
    with pytest.raises(Rejection):
        validate("set_level", {"level": 150})


def test_parse_command_for_trial_steps() -> None:
    cmd = parse_command("set_schedule", {"periods": [{"from": "22:00", "to": "06:00",
                                                      "level": 30}], "lat": 51.5, "lon": -0.1})
    assert isinstance(cmd, SetSchedule) and cmd.periods[0].end == "06:00"
    assert parse_command("set_level", {"level": 0}) == SetLevel(level=0)
    assert parse_command("get_status").params() == {}
