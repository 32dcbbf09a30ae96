"""The ingest fast paths must agree with the general, documented ones."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from labctl.metrics.lineprotocol import encode_line, encode_prefix
from labctl.metrics.points import PointEncoder, RunTags
from labctl.protocol.payloads import (
    TELEMETRY_BATCH_IN,
    TELEMETRY_IN,
    Telemetry,
    TelemetryBatch,
)
from labctl.readings import DeviceRef, Reading

channel = st.from_regex(r"[a-z0-9][a-z0-9_]{0,10}", fullmatch=True)
session = st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(channel, finite, min_size=1, max_size=8),
    sess=session,
    seq=st.integers(0, 2**63 - 1),
    ts=st.floats(946_684_800, 4_102_444_800),
)
def test_reading_lines_equal_the_general_encoder(
    values: dict[str, float], sess: str, seq: int, ts: float
) -> None:
    ref = DeviceRef("acme", "d-1")
    enc = PointEncoder("rig a", lambda r: "dut", lambda r: RunTags("r1", "trial"))
    got = enc.readings([Reading(ref, "air", sess, seq, ts, values, 0)])
    prefix = encode_prefix(
        "telemetry",
        {
            "run": "r1",
            "trial": "trial",
            "rig": "rig a",
            "vendor": "acme",
            "device": "d-1",
            "role": "dut",
            "stream": "air",
        },
    )
    fields: dict[str, float | int | str] = {**values, "seq": seq, "session": sess}
    assert got == encode_line(prefix, fields, round(ts * 1e9))


CASES = [
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": 1.5, "b": -2e30}},
    {"session": "s", "seq": -1, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": 1.0, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": True, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": 5, "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": "1780000000", "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": "1"}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": None}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": 1}, "extra": 1},
    {"session": "", "seq": 1, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "a/b", "seq": 1, "ts": 1.78e9, "v": {"a": 1}},
    {"seq": 1, "ts": 1.78e9, "v": {"a": 1}},
]
RAW = [
    b'{"session":"s","seq":1,"ts":1780000000,"v":{"a":NaN}}',
    b'{"session":"s","seq":1,"ts":1780000000,"v":{"a":-Infinity}}',
    b'{"session":"s","seq":1,"ts":1780000000,"v":{"a":1e999}}',
    b'{"session":"s","seq":1,"ts":1780000000,"v":{"a":1}',
    b'\xff{"session":"s"}',
]


def accepts(fn: object, payload: bytes) -> bool:
    try:
        fn(payload)  # type: ignore[operator]
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("payload", [orjson.dumps(c) for c in CASES] + RAW)
def test_inbound_validation_matches_the_models(payload: bytes) -> None:
    assert accepts(TELEMETRY_IN.validate_json, payload) == accepts(
        Telemetry.model_validate_json, payload
    )
    batch = b'{"session":"s","samples":[' + payload + b"]}"
    assert accepts(TELEMETRY_BATCH_IN.validate_json, batch) == accepts(
        TelemetryBatch.model_validate_json, batch
    )


def test_valid_cases_really_validate() -> None:
    assert accepts(TELEMETRY_IN.validate_json, orjson.dumps(CASES[1]))
    assert not accepts(TELEMETRY_IN.validate_json, RAW[2])
