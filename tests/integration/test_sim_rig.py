"""The simulated PM2.5 rig against a real Mosquitto: retained presence, exactly-once samples
per ``(session, seq)``, and no loss across a broker restart."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from labctl_sim.models import pm25_collocation
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from labctl.bus.broker import PrivateBroker
from labctl.protocol import topics
from labctl.protocol.payloads import Manifest, State, TelemetryBatch

pytestmark = pytest.mark.integration

START_ISO = "2026-06-01T00:00:00Z"
START = 1_780_272_000.0
KEYS = [d.key for d in pm25_collocation().devices]
OFFSETS = {d.key: d.clock_offset_s for d in pm25_collocation().devices}

Key = tuple[str, int]  # (session, seq)


class Subscriber:
    """A paho subscriber to everything under ``lab/v1``, validating as it collects."""

    def __init__(self, broker: PrivateBroker, client_id: str, persistent: bool = False) -> None:
        self.lock = threading.Lock()
        self.samples: dict[str, Counter[Key]] = {k: Counter() for k in KEYS}
        self.timestamps: dict[tuple[str, str, int], float] = {}
        self.retained: dict[str, bytes] = {}
        self.manifests: Counter[str] = Counter()
        self.errors: list[str] = []
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        props = None
        if persistent:
            # The broker keeps this session (and queues QoS 1 messages) while we are away.
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
        # Clean start off from the very first connect: Mosquitto saves a session in its
        # persistence file (across its own restart) only if the client connected without it.
        self.client.connect(
            broker.host,
            broker.port,
            keepalive=5,
            properties=props,
            clean_start=not persistent,
        )
        self.client.loop_start()
        assert self.connected.wait(5), "subscriber did not connect"

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        client.subscribe("lab/v1/#", qos=1)
        self.connected.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # collected; a failing callback would be silent in paho
            with self.lock:
                self.errors.append(f"{msg.topic}: {exc}")

    def _handle(self, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith("lab/v1/_"):
            return  # the lab's own topics (controller presence)
        parsed = topics.parse(msg.topic)
        key = f"{parsed.vendor}/{parsed.device}"
        with self.lock:
            if msg.retain:
                self.retained[msg.topic] = msg.payload
            if parsed.kind == topics.TopicKind.MANIFEST:
                Manifest.model_validate_json(msg.payload)
                self.manifests[key] += 1
            elif parsed.kind == topics.TopicKind.STATE:
                State.model_validate_json(msg.payload)
            elif parsed.kind == topics.TopicKind.TELEMETRY:
                assert parsed.name == "air"
                batch = TelemetryBatch.model_validate_json(msg.payload)
                for s in batch.samples:
                    self.samples[key][(batch.session, s.seq)] += 1
                    self.timestamps[(key, batch.session, s.seq)] = s.ts
                    assert s.v["pm25"] >= 0
                    assert 0 <= s.v["rh"] <= 100
                    assert set(s.v) == {"pm25", "rh", "temperature"}

    def unique(self) -> int:
        with self.lock:
            return sum(len(c) for c in self.samples.values())

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.unique() < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Sim:
    """``python -m labctl_sim`` as a child process, its stdout lines in a queue."""

    def __init__(self, broker: PrivateBroker, stats: Path, *args: str) -> None:
        self.stats = stats
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labctl_sim",
                "--host",
                broker.host,
                "--port",
                str(broker.port),
                "--seed",
                "42",
                "--start",
                START_ISO,
                "--stats",
                str(stats),
                "--flush-timeout",
                "5",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, count: int, timeout: float) -> list[str]:
        """Wait for ``count`` stdout lines starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        got = [x for x in self.seen if x.startswith(prefix)]
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"saw {got} of {count} {prefix!r} lines; all: {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                got.append(line)
        return got

    def terminate(self, timeout: float = 15.0) -> dict[str, dict[str, object]]:
        """SIGTERM, expect a clean exit, return the stats file."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        stats: dict[str, dict[str, object]] = json.loads(self.stats.read_text())
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sub_factory(broker: PrivateBroker) -> Iterator[list[Subscriber]]:
    subs: list[Subscriber] = []
    yield subs
    for s in subs:
        s.close()


@pytest.fixture
def durable_broker(broker: PrivateBroker) -> PrivateBroker:
    """The ``broker`` fixture; it persists sessions across restarts (tested in test_broker)."""
    return broker


def _published_keys(stats: dict[str, object]) -> set[Key]:
    """Every (session, seq) the stats file says the broker acknowledged (no drops here)."""
    sessions = stats["sessions"]
    assert isinstance(sessions, dict)
    out: set[Key] = set()
    for session, s in sessions.items():
        assert s["count"] == s["last_seq"] - s["first_seq"] + 1
        out |= {(session, q) for q in range(s["first_seq"], s["last_seq"] + 1)}
    return out


def _retained_presence(broker: PrivateBroker, subs: list[Subscriber]) -> dict[str, State]:
    """Retained state per device, as a newcomer sees it."""
    late = Subscriber(broker, f"late-{len(subs)}")
    subs.append(late)
    deadline = time.monotonic() + 5
    want = {topics.state(*k.split("/")) for k in KEYS}
    want |= {topics.manifest(*k.split("/")) for k in KEYS}
    while not want <= set(late.retained) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert want <= set(late.retained), f"missing retained: {want - set(late.retained)}"
    out = {}
    for k in KEYS:
        vendor, device = k.split("/")
        manifest = Manifest.model_validate_json(late.retained[topics.manifest(vendor, device)])
        state = State.model_validate_json(late.retained[topics.state(vendor, device)])
        assert (manifest.device.vendor, manifest.device.id) == (vendor, device)
        assert manifest.session == state.session
        assert [c.name for c in manifest.channels] == ["pm25", "rh", "temperature"]
        assert all(c.rate_hz == pytest.approx(1 / 60) for c in manifest.channels)
        out[k] = state
    return out


def test_rig_delivers_every_sample_exactly_once(
    broker: PrivateBroker, tmp_path: Path, sub_factory: list[Subscriber]
) -> None:
    sub = Subscriber(broker, "test-sub")
    sub_factory.append(sub)
    sim = Sim(broker, tmp_path / "stats.json", "--speed", "300000", "--until", "2d")
    try:
        online = sim.expect("online ", 4, timeout=15)
        assert sorted(line.split()[1] for line in online) == sorted(KEYS)
        sim.expect("done ", 4, timeout=15)
        per_device = 2 * 1440
        sub.wait_for(4 * per_device, timeout=5)

        states = _retained_presence(broker, sub_factory)
        assert {s.state for s in states.values()} == {"online"}

        # A controller coming online makes every device republish its manifest.
        before = dict(sub.manifests)
        broker_pub = sub_factory[-1].client
        broker_pub.publish(topics.controller_state("test"), b'{"state":"online"}', qos=1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            sub.manifests[k] <= before.get(k, 0) for k in KEYS
        ):
            time.sleep(0.05)
        assert all(sub.manifests[k] > before.get(k, 0) for k in KEYS)

        stats = sim.terminate()
    finally:
        sim.kill()

    assert sub.errors == []
    for key in KEYS:
        received = sub.samples[key]
        assert max(received.values()) == 1, f"{key}: duplicates"
        dev = stats[key]
        assert dev["published"] == dev["produced"] == per_device
        assert dev["unsent"] == 0
        assert dev["dropped"] == 0
        assert set(received) == _published_keys(dev)
        # Timestamps come from the device clock: sample k at start + k·60 s (+ its offset).
        for session, seq in list(received)[:50]:
            ts = sub.timestamps[(key, session, seq)]
            assert ts == pytest.approx(START + 60 * seq + OFFSETS[key], abs=1e-3)

    states = _retained_presence(broker, sub_factory)
    assert {s.state for s in states.values()} == {"offline"}


def test_no_sample_lost_across_a_broker_restart(
    durable_broker: PrivateBroker, tmp_path: Path, sub_factory: list[Subscriber]
) -> None:
    broker = durable_broker
    sub = Subscriber(broker, "test-persistent-sub", persistent=True)
    sub_factory.append(sub)
    # 6 days at 100000× is ~5 s of production: the restart lands in the middle of it.
    sim = Sim(broker, tmp_path / "stats.json", "--speed", "100000", "--until", "6d")
    per_device = 6 * 1440
    try:
        sim.expect("online ", 4, timeout=15)
        time.sleep(1.0)
        received_before = sub.unique()
        broker.stop()
        assert (broker.directory / "mosquitto.db").is_file(), "the broker saved no session"
        time.sleep(1.0)  # devices keep producing into their buffers meanwhile
        broker.start()
        sim.expect("online ", 8, timeout=15)  # every device came back, with a new session
        sim.expect("done ", 4, timeout=15)
        sub.wait_for(4 * per_device, timeout=10)
        stats = sim.terminate()
    finally:
        sim.kill()

    assert 0 < received_before < 4 * per_device, "the restart must fall mid-run"
    assert sub.errors == []
    for key in KEYS:
        dev = stats[key]
        sessions = dev["sessions"]
        assert isinstance(sessions, dict)
        assert len(sessions) >= 2
        assert dev["connects"] >= 2
        assert dev["published"] == dev["produced"] == per_device
        assert dev["unsent"] == 0
        assert dev["dropped"] == 0
        assert set(sub.samples[key]) == _published_keys(dev), key
