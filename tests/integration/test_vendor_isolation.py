"""Vendor isolation on the lab broker, proven by delivery (never by SUBACK/PUBACK codes).

The broker runs the exact configuration ``labctl broker config`` writes. Two vendors:
``acme`` (password over TLS) and ``bolt`` (client certificate, mutual TLS); every test runs
with each as the attacker against the other, over MQTT 5 and 3.1.1. Each test has a positive
control (the same action on the attacker's own topics is delivered), published after the
forbidden one, so it is also the barrier after which "nothing arrived" is meaningful.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from paho.mqtt.enums import MQTTProtocolVersion

from labctl.bus.broker import free_port
from labctl.bus.mqtt import MqttBus
from labctl.cli.main import cli
from labctl.config import load_settings
from labctl.security.lab import reload, running_broker_pid
from tests.labbroker import (
    GRACE_S,
    PROTOCOLS,
    Identity,
    LabRig,
    Mqtt,
    Refused,
    settle,
    start_mosquitto,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRig]:
    """One lab broker for the module, with vendors acme (password) and bolt (certificate)."""
    r = LabRig(tmp_path_factory.mktemp("lab-broker"))
    r.add_password_vendor("acme")
    r.add_cert_vendor("bolt")
    r.start()
    yield r
    r.stop()


@pytest.fixture(params=sorted(PROTOCOLS))
def proto(request: pytest.FixtureRequest) -> MQTTProtocolVersion:
    """The MQTT version of the vendors' clients."""
    return PROTOCOLS[request.param]


@pytest.fixture(params=["acme-attacks-bolt", "bolt-attacks-acme"])
def pair(request: pytest.FixtureRequest, rig: LabRig) -> tuple[Identity, Identity]:
    """(attacker, victim)."""
    attacker, _, victim = str(request.param).split("-")
    return rig.identities[attacker], rig.identities[victim]


@pytest.fixture
def controller(rig: LabRig) -> Iterator[Mqtt]:
    """The controller, subscribed to everything on the local listener."""
    c = Mqtt(rig.controller)
    c.subscribe("lab/v1/#")
    yield c
    c.close()


def dev() -> str:
    """A device name no other test uses (retained messages outlive tests)."""
    return f"d{uuid.uuid4().hex[:10]}"


def root(ident: Identity, device: str) -> str:
    return f"lab/v1/{ident.name}/{device}"


def test_vendor_cannot_publish_as_another_vendor(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity], controller: Mqtt
) -> None:
    attacker, victim = pair
    theirs, mine = root(victim, dev()), root(attacker, dev())
    a = Mqtt(attacker, proto)
    try:
        a.publish(f"{theirs}/telemetry/pm25", b'{"forged":1}')
        a.publish(f"{theirs}/state", b'{"state":"offline"}', retain=True)
        a.publish(f"{theirs}/manifest", b'{"forged":1}', retain=True)
        a.publish(f"{theirs}/events/detections", b"{}")
        a.publish(f"{theirs}/cmd/c1/res", b'{"id":"c1","status":"succeeded"}')
        a.publish(f"{mine}/telemetry/pm25", b"control")
        settle(controller, f"{mine}/telemetry/pm25", b"control")
        assert controller.on(theirs) == []
        # Nothing was retained either: a fresh subscriber gets nothing of the victim's.
        fresh = Mqtt(rig.controller)
        fresh.subscribe(f"{theirs}/#")
        a.publish(f"{mine}/state", b"control-2", retain=True)
        fresh.subscribe(f"{mine}/state")
        settle(fresh, f"{mine}/state", b"control-2")
        assert fresh.on(theirs) == []
        fresh.close()
    finally:
        a.close()


def test_vendor_cannot_send_commands_to_any_device(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity]
) -> None:
    attacker, victim = pair
    theirs, mine = root(victim, dev()), root(attacker, dev())
    victim_dev = Mqtt(victim, proto)
    own_dev = Mqtt(attacker, proto)
    a = Mqtt(attacker, proto)
    ctl = Mqtt(rig.controller)
    try:
        victim_dev.subscribe(f"{theirs}/cmd/+/req")
        own_dev.subscribe(f"{mine}/cmd/+/req")
        a.publish(f"{theirs}/cmd/evil/req", b'{"id":"evil","op":"reboot"}')
        a.publish(f"{mine}/cmd/evil/req", b'{"id":"evil","op":"reboot"}')  # own device too
        ctl.publish(f"{theirs}/cmd/ok/req", b"control")
        ctl.publish(f"{mine}/cmd/ok/req", b"control")
        victim_dev.wait_for(f"{theirs}/cmd/ok/req", b"control")
        settle(own_dev, f"{mine}/cmd/ok/req", b"control")
        assert [m.topic for m in victim_dev.messages] == [f"{theirs}/cmd/ok/req"]
        assert [m.topic for m in own_dev.messages] == [f"{mine}/cmd/ok/req"]
    finally:
        for c in (victim_dev, own_dev, a, ctl):
            c.close()


def test_client_ids_shaped_like_another_vendors_gain_nothing(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity], controller: Mqtt
) -> None:
    attacker, victim = pair
    device = dev()
    theirs, mine = root(victim, device), root(attacker, dev())
    shapes = [f"{victim.name}/{device}", "#", "+", f"lab/v1/{victim.name}/#", victim.name]
    clients = [Mqtt(attacker, proto, client_id=cid) for cid in shapes]
    ctl = Mqtt(rig.controller)
    try:
        for i, a in enumerate(clients):
            a.subscribe(
                f"{theirs}/cmd/+/req",
                f"lab/v1/{victim.name}/#",
                f"{mine}/cmd/+/req",
                f"{mine}/stim/+",
            )
            a.publish(f"{theirs}/telemetry/pm25", b"forged")
            a.publish(f"{mine}/telemetry/c{i}", b"control")  # each client's own barrier
        for i in range(len(clients)):
            controller.wait_for(f"{mine}/telemetry/c{i}", b"control")
        time.sleep(GRACE_S)
        assert controller.on(f"{theirs}/telemetry") == []
        ctl.publish(f"{theirs}/cmd/c1/req", b"for-victim")
        ctl.publish(f"{theirs}/stim/f1", b"frame-for-victim")  # replay frames are per device
        ctl.publish(f"{mine}/cmd/ok/req", b"control")
        ctl.publish(f"{mine}/stim/ok", b"control")
        for a in clients:
            a.wait_for(f"{mine}/cmd/ok/req", b"control")
            a.wait_for(f"{mine}/stim/ok", b"control")
        time.sleep(GRACE_S)
        assert [a.client_id for a in clients if a.on(theirs)] == []
    finally:
        for c in (*clients, ctl):
            c.close()


def test_taking_over_a_devices_client_id_yields_none_of_its_session(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity]
) -> None:
    attacker, victim = pair
    device = dev()
    theirs, mine = root(victim, device), root(attacker, dev())
    victim_id = f"{victim.name}-{device}"
    # The victim's device has a durable session (a subscription and a queued command)...
    v = Mqtt(victim, proto, client_id=victim_id, clean=False, session_expiry=3600)
    v.subscribe(f"{theirs}/cmd/+/req")
    v.close()
    ctl = Mqtt(rig.controller)
    ctl.publish(f"{theirs}/cmd/queued/req", b"queued-for-victim")
    # ...and the attacker connects with that client id, asking for the session back.
    a = Mqtt(attacker, proto, client_id=victim_id, clean=False, session_expiry=60)
    try:
        a.subscribe(f"{mine}/cmd/+/req")
        ctl.publish(f"{theirs}/cmd/live/req", b"for-victim")
        ctl.publish(f"{mine}/cmd/ok/req", b"control")
        settle(a, f"{mine}/cmd/ok/req", b"control")
        assert a.on(theirs) == []
    finally:
        a.close()
        ctl.close()


WILL_SCRIPT = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
spec = json.loads(sys.argv[1])
clients = []
for topic in spec["wills"]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=spec["proto"])
    if spec.get("username"):
        c.username_pw_set(spec["username"], spec["password"])
    c.tls_set(ca_certs=spec["ca"], certfile=spec.get("cert"), keyfile=spec.get("key"))
    c.will_set(topic, b"lost", qos=1, retain=True)
    c.connect("127.0.0.1", spec["port"], keepalive=30)
    c.loop_start()
    clients.append(c)
deadline = time.monotonic() + 5
while not all(c.is_connected() for c in clients) and time.monotonic() < deadline:
    time.sleep(0.01)
print("ready" if all(c.is_connected() for c in clients) else "not connected", flush=True)
time.sleep(60)
"""


def test_last_will_aimed_at_another_vendor_is_not_delivered(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity], controller: Mqtt
) -> None:
    attacker, victim = pair
    theirs, mine = root(victim, dev()), root(attacker, dev())
    spec = {
        "proto": proto,
        "port": attacker.port,
        "username": attacker.username,
        "password": attacker.password,
        "ca": str(attacker.ca),
        "cert": str(attacker.cert) if attacker.cert else None,
        "key": str(attacker.key) if attacker.key else None,
        # the forbidden will first, so the control will is published after it
        "wills": [f"{theirs}/state", f"{mine}/state"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WILL_SCRIPT, json.dumps(spec)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)  # killed: no DISCONNECT, the broker sends the wills
        proc.wait()
    settle(controller, f"{mine}/state", b"lost")
    assert controller.on(theirs) == []
    fresh = Mqtt(rig.controller)
    fresh.subscribe(f"{theirs}/state", f"{mine}/state")
    settle(fresh, f"{mine}/state", b"lost")
    assert fresh.on(theirs) == [], "the forged will was retained"
    fresh.close()


def test_empty_retained_publish_cannot_erase_another_vendors_manifest(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity]
) -> None:
    attacker, victim = pair
    theirs, mine, barrier = root(victim, dev()), root(attacker, dev()), root(attacker, dev())
    v = Mqtt(victim, proto)
    a = Mqtt(attacker, proto)
    try:
        v.publish(f"{theirs}/manifest", b"victim-manifest", retain=True)
        a.publish(f"{mine}/manifest", b"own-manifest", retain=True)
        a.publish(f"{barrier}/manifest", b"barrier", retain=True)
        a.publish(f"{theirs}/manifest", b"", retain=True)  # forbidden: erase theirs
        a.publish(f"{mine}/manifest", b"", retain=True)  # control: erase own
        fresh = Mqtt(rig.controller)
        # Retained messages come in subscription order: the barrier's arrives last.
        fresh.subscribe(f"{theirs}/manifest")
        fresh.subscribe(f"{mine}/manifest")
        fresh.subscribe(f"{barrier}/manifest")
        settle(fresh, f"{barrier}/manifest", b"barrier")
        assert [m.payload for m in fresh.on(theirs)] == [b"victim-manifest"]
        assert fresh.on(mine) == [], "the attacker could not erase its own manifest: control broke"
        fresh.close()
    finally:
        v.close()
        a.close()


def test_subscribing_to_everything_receives_only_ones_own(
    rig: LabRig, proto: MQTTProtocolVersion, pair: tuple[Identity, Identity]
) -> None:
    attacker, victim = pair
    theirs, mine = root(victim, dev()), root(attacker, dev())
    v = Mqtt(victim, proto)
    ctl = Mqtt(rig.controller)
    v.publish(f"{theirs}/manifest", b"victim-manifest", retain=True)
    v.publish(f"{theirs}/state", b"online", retain=True)
    a = Mqtt(attacker, proto)
    try:
        a.subscribe("lab/v1/#", "#", f"lab/v1/{victim.name}/#", f"lab/v1/_err/{victim.name}/#")
        v.publish(f"{theirs}/telemetry/pm25", b"victim-telemetry")
        v.publish(f"{theirs}/events/detections", b"victim-event")
        ctl.publish(f"{theirs}/cmd/c1/req", b"victim-command")
        ctl.publish(f"lab/v1/_err/{victim.name}/{theirs.rsplit('/', 1)[1]}", b"victim-error")
        # controls: what the attacker may read
        ctl.publish(f"lab/v1/_err/{attacker.name}/{mine.rsplit('/', 1)[1]}", b"own-error")
        ctl.publish("lab/v1/_ctl/test-ctl/state", b"controller-online")
        ctl.publish(f"{mine}/cmd/c1/req", b"control")
        settle(a, f"{mine}/cmd/c1/req", b"control")
        a.wait_for(f"lab/v1/_err/{attacker.name}/{mine.rsplit('/', 1)[1]}", b"own-error")
        a.wait_for("lab/v1/_ctl/test-ctl/state", b"controller-online")
        leaked = [m for m in a.messages if f"/{victim.name}/" in m.topic]
        assert leaked == []
    finally:
        for c in (a, v, ctl):
            c.close()


def _refused(ident: Identity, proto: MQTTProtocolVersion) -> str | None:
    try:
        c = Mqtt(ident, proto, timeout=3)
    except Refused as exc:
        return str(exc)
    c.close()
    return None


def test_unauthenticated_and_foreign_clients_are_refused(
    rig: LabRig, proto: MQTTProtocolVersion
) -> None:
    s, pw, cert = rig.settings, rig.identities["acme"], rig.identities["bolt"]
    # Positive controls: every listener accepts its rightful users.
    assert [_refused(i, proto) for i in (rig.controller, pw, cert)] == [None, None, None]
    bad = {
        "anonymous on local": Identity("x", s.local_port),
        "anonymous over TLS": Identity("x", pw.port, ca=rig.ca),
        "anonymous on mutual TLS (no certificate)": Identity("x", cert.port, ca=rig.ca),
        "wrong vendor password": Identity("x", pw.port, "acme", "not-the-password", rig.ca),
        "wrong controller password": Identity(
            "x", s.local_port, rig.controller.username, "not-the-password"
        ),
        "vendor credentials on the controller's listener": Identity(
            "x", s.local_port, "acme", pw.password
        ),
        "controller credentials on a vendor listener": Identity(
            "x", pw.port, rig.controller.username, rig.controller.password, rig.ca
        ),
        "plain MQTT on the TLS listener": Identity("x", pw.port, "acme", pw.password),
        "foreign-CA certificate named after a vendor": rig.foreign_cert("bolt"),
        "foreign-CA certificate named like the controller": rig.foreign_cert("_labctl"),
        "lab certificate on the password listener, no password": Identity(
            "x", pw.port, ca=rig.ca, cert=cert.cert, key=cert.key
        ),
    }
    accepted = [what for what, ident in bad.items() if _refused(ident, proto) is None]
    assert accepted == []


def test_revoked_vendors_are_refused_after_reload(tmp_path: Path) -> None:
    r = LabRig(tmp_path)
    pw, issued, other = (
        r.add_password_vendor("acme"),
        r.add_cert_vendor("bolt"),
        r.add_password_vendor("coil"),
    )
    # The vendor keeps its copy of the bundle; labctl deletes its own on revoke.
    assert issued.cert is not None
    bundle = shutil.copytree(issued.cert.parent, tmp_path / "at-the-vendor")
    cert = Identity(
        "bolt", issued.port, ca=bundle / "ca.crt", cert=bundle / "bolt.crt", key=bundle / "bolt.key"
    )
    r.start()
    ctl = Mqtt(r.controller)
    try:
        ctl.subscribe("lab/v1/#")
        assert [_refused(i, PROTOCOLS["mqtt5"]) for i in (pw, cert, other)] == [None] * 3
        live_pw, live_cert = Mqtt(pw), Mqtt(cert)
        r.lab.revoke_vendor("acme")
        _, written = r.lab.revoke_vendor("bolt")
        assert not issued.cert.exists()
        pid = written.running_pid
        assert pid is not None and pid == r.pid == running_broker_pid(written.layout)
        reload(pid)
        time.sleep(GRACE_S)  # SIGHUP is asynchronous
        for proto in PROTOCOLS.values():
            assert _refused(pw, proto) is not None
            assert _refused(cert, proto) is not None
            assert _refused(other, proto) is None
        # A connected password client is dropped on reload. A connected certificate client
        # stays (mosquitto checks the CRL at the handshake), but its rules are gone.
        assert not live_pw.connected
        if live_cert.connected:
            live_cert.publish("lab/v1/bolt/d1/telemetry/pm25", b"after-revoke")
        ctl.publish("lab/v1/_ctl/test/state", b"barrier")
        settle(ctl, "lab/v1/_ctl/test/state", b"barrier")
        assert ctl.on("lab/v1/bolt/") == []
        live_cert.close()
    finally:
        ctl.close()
        r.stop()


async def test_cli_end_to_end_controller_and_vendor_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``broker config`` + ``vendor add`` as a user types them; the broker started on that
    config; the vendor connects with the password it was shown; labctl's own bus connects
    with the labctl.yaml snippet it was shown and receives the vendor's telemetry."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABCTL_CONFIG", raising=False)
    ports = {k: free_port() for k in ("LOCAL", "VENDOR_PASSWORD", "VENDOR_CERT")}
    env = {f"LABCTL_LAB_BROKER__{k}_PORT": str(v) for k, v in ports.items()}
    env |= {
        "LABCTL_DATA_DIR": str(tmp_path / "data"),
        "LABCTL_LAB_BROKER__VENDOR_BIND": "127.0.0.1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run = CliRunner().invoke
    res = run(cli, ["broker", "config", "--out", str(tmp_path / "conf")])
    assert res.exit_code == 0, res.output
    (tmp_path / "labctl.yaml").write_text(res.output[res.output.index("broker:\n") :])
    res = run(cli, ["vendor", "add", "acme"])
    assert res.exit_code == 0, res.output
    password = next(ln.split(": ", 1)[1] for ln in res.output.splitlines() if "password:" in ln)
    broker = load_settings().broker
    assert broker.password is not None and broker.username is not None

    proc = start_mosquitto(
        tmp_path / "conf" / "mosquitto.conf", list(ports.values()), tmp_path / "mosquitto.log"
    )
    try:
        vendor = Mqtt(
            Identity(
                "acme",
                ports["VENDOR_PASSWORD"],
                "acme",
                password,
                tmp_path / "conf" / "tls" / "ca.crt",
            )
        )
        async with MqttBus(
            broker.host,
            broker.port,
            f"ctl-{uuid.uuid4().hex[:8]}",
            ["lab/v1/+/+/telemetry/+"],
            username=broker.username,
            password=broker.password.get_secret_value(),
            session_expiry_s=1,
        ) as bus:
            await asyncio.to_thread(vendor.publish, "lab/v1/acme/d1/telemetry/pm25", b"hello")
            batch = await asyncio.wait_for(anext(bus.batches()), 5)
            assert [m.payload for m in batch] == [b"hello"]
            bus.ack(batch)
        vendor.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
