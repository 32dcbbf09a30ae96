"""The lab broker for tests: the configuration ``labctl broker config`` writes, started for real.

``LabRig`` issues identities with :class:`labctl.security.lab.LabBroker`, starts
``mosquitto -c`` on the generated config (three private loopback ports) and stops it by pid.
``Mqtt`` is a small synchronous paho 2.x client that records what it receives, so tests can
prove isolation by delivery: a positive-control message published after the forbidden one is
the barrier (mosquitto handles packets in order and delivers per connection in order), then a
short grace period, then "nothing of the forbidden kind arrived".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from labctl.bus.broker import free_port
from labctl.procs import terminate
from labctl.security import pki
from labctl.security.lab import LabBroker
from labctl.security.settings import LabBrokerSettings

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
GRACE_S = 0.5
"""How long "never delivered" waits after the barrier arrived."""
PROTOCOLS = {"mqtt5": MQTTProtocolVersion.MQTTv5, "mqtt311": MQTTProtocolVersion.MQTTv311}


class Refused(Exception):
    """The broker did not accept the connection (CONNACK failure, TLS failure, hang-up)."""


@dataclass(frozen=True)
class Identity:
    """How one client authenticates, and on which listener."""

    name: str
    port: int
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Message:
    """A received message."""

    topic: str
    payload: bytes
    retain: bool


class Mqtt:
    """A connected paho client that keeps every message it receives."""

    def __init__(
        self,
        ident: Identity,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        *,
        client_id: str | None = None,
        clean: bool = True,
        session_expiry: int = 0,
        will: tuple[str, bytes, bool] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.ident = ident
        self.protocol = protocol
        self.client_id = client_id or f"t-{uuid.uuid4().hex[:12]}"
        kwargs: dict[str, Any] = {}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            reconnect_on_failure=False,  # a refusal is the answer; and loop_stop() is instant
            **kwargs,
        )
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.messages: list[Message] = []
        self._connack: str | None = None
        self._closed = False
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        if ident.username is not None:
            self.client.username_pw_set(ident.username, ident.password)
        if ident.ca is not None:
            self.client.tls_set(
                ca_certs=str(ident.ca),
                certfile=str(ident.cert) if ident.cert else None,
                keyfile=str(ident.key) if ident.key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=will[2])
        self._connect(clean, session_expiry, timeout)

    def _connect(self, clean: bool, session_expiry: int, timeout: float) -> None:
        props = None
        extra: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = session_expiry
            extra = {"clean_start": clean, "properties": props}
        try:
            self.client.connect("127.0.0.1", self.ident.port, keepalive=30, **extra)
        except (OSError, ssl.SSLError) as exc:
            raise Refused(f"connect failed: {exc!r}") from exc
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connack is not None or self._closed, timeout)
            outcome = self._connack
        if outcome != "ok":
            self.close()
            raise Refused(f"not accepted: {outcome or 'connection closed before CONNACK'}")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._cond:
            self._connack = "ok" if not reason.is_failure else str(reason)
            self._cond.notify_all()

    def _on_disconnect(self, *_args: Any) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        """Still connected (the broker has not hung up)."""
        return not self._closed

    def subscribe(self, *topics: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK (its codes are not evidence)."""
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(5), f"no SUBACK for {topics}"

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait until the broker has handled it (PUBACK), so later
        messages are routed after this one. The PUBACK's code is not evidence."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), f"no PUBACK for {topic}"

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 5.0) -> Message:
        """The first message on ``topic`` (with ``payload``), waiting up to ``timeout``.
        Used for positive controls: failing here means the setup, not isolation, broke."""

        def find() -> Message | None:
            return next(
                (
                    m
                    for m in self.messages
                    if m.topic == topic and (payload is None or m.payload == payload)
                ),
                None,
            )

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        assert found is not None, (
            f"positive control {topic!r} was not delivered to {self.ident.name} within "
            f"{timeout} s: the setup is broken, not isolated"
        )
        return found

    def on(self, needle: str) -> list[Message]:
        """Messages received so far whose topic contains ``needle``."""
        with self._lock:
            return [m for m in self.messages if needle in m.topic]

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def settle(then_check: Mqtt, control_topic: str, control_payload: bytes | None = None) -> None:
    """The barrier: wait for the positive control, then the grace period."""
    then_check.wait_for(control_topic, control_payload)
    time.sleep(GRACE_S)


class LabRig:
    """Identities, the generated configuration and a running mosquitto."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = LabBrokerSettings(
            config_dir=root / "mosquitto",
            local_port=free_port(),
            vendor_bind="127.0.0.1",
            vendor_password_port=free_port(),
            vendor_cert_port=free_port(),
        )
        self.controller_password = "controller-" + uuid.uuid4().hex
        self.lab = LabBroker(
            root / "state",
            self.settings,
            controller_password=self.controller_password,
            run_as="root" if os.geteuid() == 0 else None,
        )
        self.layout = self.lab.write_config().layout
        self.controller = Identity(
            "controller",
            self.settings.local_port,
            self.settings.controller_username,
            self.controller_password,
        )
        self.identities: dict[str, Identity] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        """The lab CA certificate vendors trust."""
        return self.layout.ca

    def add_password_vendor(self, name: str) -> Identity:
        """Issue a password identity (TLS listener)."""
        new, _ = self.lab.add_vendor(name, "password")
        ident = Identity(name, self.settings.vendor_password_port, name, new.password, self.ca)
        self.identities[name] = ident
        return ident

    def add_cert_vendor(self, name: str) -> Identity:
        """Issue a certificate identity (mutual-TLS listener)."""
        new, _ = self.lab.add_vendor(name, "certificate")
        assert new.cert is not None
        ident = Identity(
            name,
            self.settings.vendor_cert_port,
            ca=new.cert.ca,
            cert=new.cert.cert,
            key=new.cert.key,
        )
        self.identities[name] = ident
        return ident

    def foreign_cert(self, cn: str) -> Identity:
        """A client certificate with CN ``cn`` from a CA the lab does not trust."""
        ca = pki.ensure_ca(self.root / "foreign-ca", "not the lab")
        issued = pki.issue_client_cert(ca, cn, self.root / "foreign", 30)
        return Identity(
            f"foreign-{cn}",
            self.settings.vendor_cert_port,
            ca=self.ca,
            cert=issued.paths.cert,
            key=issued.paths.key,
        )

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto on the generated config; return once all listeners accept."""
        ports = [
            self.settings.local_port,
            self.settings.vendor_password_port,
            self.settings.vendor_cert_port,
        ]
        self._proc = start_mosquitto(self.layout.conf, ports, self.root / "mosquitto.log", timeout)

    def stop(self) -> None:
        """Stop the broker by pid."""
        proc, self._proc = self._proc, None
        terminate(proc, 10)

    def log(self) -> str:
        """The broker's log so far."""
        return (self.root / "mosquitto.log").read_text(errors="replace")


def start_mosquitto(
    conf: Path, ports: list[int], log: Path, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """``mosquitto -c conf``, returned once every port in ``ports`` accepts connections."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=fh,
            stderr=fh,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    waiting = list(ports)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited at start:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), 0.2).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.05)
    if waiting:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"mosquitto did not listen on {waiting}:\n{log.read_text()[-3000:]}")
    return proc
