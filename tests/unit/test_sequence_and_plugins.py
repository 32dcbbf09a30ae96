from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from labctl.plugins import PluginError, PluginRegistry
from labctl.protocol import topics
from labctl.rig.sequence import SequenceTracker


def test_sequence_tracker_dedupes_and_counts_gaps() -> None:
    t = SequenceTracker()
    assert [t.accept("a", s) for s in (0, 1, 1, 3, 2, 5)] == [True, True, False, True, True, True]
    assert t.counts()["a"] == (5, 1)  # seq 4 missing


def test_sequence_tracker_memory_is_bounded() -> None:
    t = SequenceTracker(window=100)
    for s in range(10_000):
        t.accept("a", s)
    assert not t.accept("a", 5)  # long folded away: treated as a redelivery
    assert len(t._sessions["a"].starts) <= 200


def test_registry_rejects_duplicate_entry_points() -> None:
    eps = [
        EntryPoint("mqtt-sensor", "labctl_drivers.mqtt_sensor:MqttSensorDriver", "labctl.drivers"),
        EntryPoint("mqtt-sensor", "labctl_drivers.mqtt_sensor:MqttSensorDriver", "labctl.drivers"),
    ]
    with pytest.raises(PluginError, match="two drivers are called 'mqtt-sensor'"):
        PluginRegistry[object]("driver").load("labctl.drivers", eps)


def test_installed_plugins_are_found() -> None:
    from labctl.drivers import driver_registry
    from labctl.evaluators.base import evaluator_registry

    assert "mqtt-sensor" in driver_registry().names()
    assert "sensor-accuracy" in evaluator_registry().names()
    with pytest.raises(PluginError, match="no driver called 'nope'"):
        driver_registry().get("nope")


@pytest.mark.parametrize(
    "topic",
    [
        "lab/v1/a/b",
        "lab/v2/a/b/state",
        "lab/v1/_x/b/state",
        "lab/v1/a/b/telemetry",
        "lab/v1/a/b/telemetry/x/y",
        "lab/v1/a/b/cmd/1/maybe",
        "lab/v1/a b/c/state",
    ],
)
def test_topics_outside_the_scheme(topic: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse(topic)


def test_topics_round_trip() -> None:
    t = topics.parse(topics.telemetry("acme", "s-1", "air"))
    assert (t.vendor, t.device, t.kind, t.name) == (
        "acme",
        "s-1",
        topics.TopicKind.TELEMETRY,
        "air",
    )
    assert topics.parse(topics.command_response("a", "b", "c1")).kind is topics.TopicKind.CMD_RES
