"""The edge: bad messages are dropped, counted and explained; good ones become readings."""

from __future__ import annotations

import orjson
import pytest
from labctl_drivers.mqtt_sensor import MqttSensorDriver

from labctl.bus.edge import Edge
from labctl.bus.mqtt import InboundMessage
from labctl.protocol.payloads import MAX_MANIFEST_BYTES, MAX_TELEMETRY_BYTES
from labctl.readings import DeviceRef
from labctl.rig.directory import DeviceDirectory

TS = 1_780_000_000.0


def manifest(vendor: str = "acme", device: str = "s1", **over: object) -> dict[str, object]:
    m: dict[str, object] = {
        "schema": "labctl/1",
        "version": 1,
        "session": "sess1",
        "device": {"vendor": vendor, "id": device, "model": "M", "serial": "1"},
        "channels": [{"name": "pm25", "unit": "µg/m³", "rate_hz": 1 / 60}],
    }
    m.update(over)
    return m


def msg(topic: str, payload: object, mid: int = 1) -> InboundMessage:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return InboundMessage(topic, data, 1, False, mid, 1, 0)


@pytest.fixture
def edge() -> Edge:
    e = Edge(DeviceDirectory(), MqttSensorDriver())
    e.process([msg("lab/v1/acme/s1/manifest", manifest())])
    return e


def tele(seq: int, value: object = 12.5, session: str = "sess1") -> dict[str, object]:
    return {"session": session, "seq": seq, "ts": TS + seq * 60, "v": {"pm25": value}}


def test_valid_telemetry_becomes_readings(edge: Edge) -> None:
    out = edge.process([msg("lab/v1/acme/s1/telemetry/air", tele(1))])
    assert not out.rejections
    [r] = out.readings
    assert r.device == DeviceRef("acme", "s1") and r.values == {"pm25": 12.5} and r.seq == 1


def test_batches_and_dedupe_on_session_seq(edge: Edge) -> None:
    batch = {
        "session": "sess1",
        "samples": [{"seq": i, "ts": TS + i, "v": {"pm25": float(i)}} for i in range(5)],
    }
    first = edge.process([msg("lab/v1/acme/s1/telemetry/air", batch)])
    again = edge.process([msg("lab/v1/acme/s1/telemetry/air", batch)])
    other_session = edge.process([msg("lab/v1/acme/s1/telemetry/air", {**batch, "session": "s2"})])
    assert len(first.readings) == 5
    assert again.readings == [] and again.duplicates == 5
    assert len(other_session.readings) == 5


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        (b"{not json", "json", "not valid JSON"),
        (b'{"session":"sess1","seq":1,"ts":1780000000,"v":{"pm25":NaN}}', "schema", "finite"),
        (b'{"session":"sess1","seq":1,"ts":1780000000,"v":{"pm25":Infinity}}', "schema", "finite"),
        (orjson.dumps(tele(1, "12")), "schema", "v.pm25"),
        (orjson.dumps({**tele(1), "seq": -1}), "schema", "seq"),
        (orjson.dumps({**tele(1), "ts": 12}), "schema", "ts"),
        (orjson.dumps({**tele(1), "extra": 1}), "schema", "extra"),
        (orjson.dumps(tele(1) | {"v": {"pm10": 3.0}}), "channel", "not declared"),
        (b"\xff\xfe\x00", "json", "JSON"),
        (b'{"session":"sess1","seq":1,"ts":1780000000,"v":{"pm25":1e999}}', "schema", "v.pm25"),
        (
            b'{"session":"sess1","samples":[{"seq":1,"ts":1780000000,"v":{"pm25":1}},'
            b'{"seq":2,"ts":1780000000,"v":{"pm25":true}}]}',
            "schema",
            "samples.1.v.pm25: expected `float`, got `bool`",
        ),
        (b'{"session":"sess1","seq":1,"ts":1780000000,"v":{"pm25":-Infinity}}', "schema", "-Inf"),
    ],
)
def test_bad_telemetry_is_rejected_in_words(
    edge: Edge, payload: bytes, reason: str, words: str
) -> None:
    out = edge.process([msg("lab/v1/acme/s1/telemetry/air", payload)])
    assert out.readings == []
    [rej] = out.rejections
    assert rej.reason == reason, rej
    assert words in rej.detail
    assert (rej.vendor, rej.device) == ("acme", "s1")
    assert edge.counters.rejected[reason] == 1


def test_oversized_payloads_are_rejected_before_parsing(edge: Edge) -> None:
    big = b"{" + b" " * MAX_TELEMETRY_BYTES + b"}"
    out = edge.process([msg("lab/v1/acme/s1/telemetry/air", big)])
    assert out.rejections[0].reason == "too_large"
    huge_manifest = orjson.dumps(manifest(device="s2", pad="x" * MAX_MANIFEST_BYTES))
    out = edge.process([msg("lab/v1/acme/s2/manifest", huge_manifest)])
    assert out.rejections[0].reason == "too_large"
    assert edge.directory.get(DeviceRef("acme", "s2")).quarantined  # type: ignore[union-attr]


def test_manifest_identity_must_match_topic() -> None:
    e = Edge(DeviceDirectory(), MqttSensorDriver())
    out = e.process([msg("lab/v1/acme/s9/manifest", manifest(vendor="other", device="s9"))])
    [rej] = out.rejections
    assert rej.reason == "identity" and "other/s9" in rej.detail and "acme/s9" in rej.detail
    rec = e.directory.get(DeviceRef("acme", "s9"))
    assert rec is not None and rec.quarantined and rec.manifest is None
    # …and its telemetry is refused while quarantined
    out = e.process([msg("lab/v1/acme/s9/telemetry/air", tele(1))])
    assert out.rejections[0].reason == "quarantined"


def test_unknown_device_telemetry_is_refused() -> None:
    e = Edge(DeviceDirectory(), MqttSensorDriver())
    out = e.process([msg("lab/v1/ghost/d1/telemetry/air", tele(1))])
    [rej] = out.rejections
    assert rej.reason == "unknown_device" and "manifest" in rej.detail


def test_bad_topics_and_device_command_requests(edge: Edge) -> None:
    out = edge.process(
        [
            msg("lab/v1/ACME/s1/telemetry/air", tele(1)),
            msg("lab/v1/acme/s1/nonsense", tele(1)),
            msg("lab/v1/acme/s1/cmd/x1/req", {"id": "x1"}),
        ]
    )
    assert [r.reason for r in out.rejections] == ["topic", "topic", "topic"]
    assert "ACME" in out.rejections[0].detail


def test_manifest_versions_must_not_go_back(edge: Edge) -> None:
    newer = manifest(version=3, session="sess2")
    assert not edge.process([msg("lab/v1/acme/s1/manifest", newer)]).rejections
    older = manifest(version=2, session="sess3")
    [rej] = edge.process([msg("lab/v1/acme/s1/manifest", older)]).rejections
    assert rej.reason == "manifest" and "older" in rej.detail


def test_stale_lost_is_ignored_and_current_lost_applies(edge: Edge) -> None:
    edge.process([msg("lab/v1/acme/s1/state", {"state": "online", "session": "sess1"})])
    stale = edge.process([msg("lab/v1/acme/s1/state", {"state": "lost", "session": "old"})])
    rec = edge.directory.get(DeviceRef("acme", "s1"))
    assert rec is not None and rec.state == "online" and stale.presence == []
    edge.process([msg("lab/v1/acme/s1/state", {"state": "lost", "session": "sess1"})])
    assert rec.state == "lost"


def test_one_bad_message_does_not_spoil_the_batch(edge: Edge) -> None:
    out = edge.process(
        [
            msg("lab/v1/acme/s1/telemetry/air", tele(1), 1),
            msg("lab/v1/acme/s1/telemetry/air", b"garbage", 2),
            msg("lab/v1/acme/s1/telemetry/air", tele(2), 3),
        ]
    )
    assert [r.seq for r in out.readings] == [1, 2]
    assert len(out.rejections) == 1


def test_lab_reserved_topics_are_not_device_traffic(edge: Edge) -> None:
    out = edge.process(
        [
            msg("lab/v1/_ctl/ctl-a/state", {"state": "online", "session": "x"}),
            msg("lab/v1/_err/acme/manifest", {"reason": "x"}),  # device named 'manifest'
        ]
    )
    assert out.rejections == [] and out.presence == [] and out.readings == []
    assert edge.counters.rejected_total == 0


def test_a_channel_called_samples_is_not_mistaken_for_a_batch() -> None:
    e = Edge(DeviceDirectory(), MqttSensorDriver())
    m = manifest(channels=[{"name": "samples", "unit": "1", "rate_hz": 1}])
    e.process([msg("lab/v1/acme/s1/manifest", m)])
    one = {"session": "sess1", "seq": 1, "ts": TS, "v": {"samples": 3.0}}
    out = e.process([msg("lab/v1/acme/s1/telemetry/air", one)])
    assert not out.rejections, out.rejections
    assert out.readings[0].values == {"samples": 3.0}
    # a broken batch still gets the batch's explanation
    bad = {"session": "sess1", "samples": [{"seq": 1, "ts": TS, "v": {"samples": "x"}}]}
    [rej] = e.process([msg("lab/v1/acme/s1/telemetry/air", bad)]).rejections
    assert "samples.0.v.samples" in rej.detail
