"""The ingest fast paths must agree with the general, documented ones."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from labctl.metrics.lineprotocol import encode_line, encode_prefix
from labctl.metrics.points import PointEncoder, RunTags
from labctl.protocol.inbound import InboundError, decode_batch, decode_single
from labctl.protocol.payloads import Telemetry, TelemetryBatch
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
    {"session": "a\n", "seq": 1, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "x" * 65, "seq": 1, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": 2**63, "ts": 1.78e9, "v": {"a": 1}},
    {"session": "s", "seq": 2**63 - 1, "ts": 4_102_444_800, "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": 4_102_444_800.5, "v": {"a": 1}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {f"c{i}": 1 for i in range(65)}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": {"a": True}},
    {"session": "s", "seq": 1, "ts": 1.78e9, "v": [1]},
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
    except (ValidationError, InboundError):
        return False
    return True


@pytest.mark.parametrize("payload", [orjson.dumps(c) for c in CASES] + RAW)
def test_inbound_validation_matches_the_models(payload: bytes) -> None:
    assert accepts(decode_single, payload) == accepts(Telemetry.model_validate_json, payload)
    batch = b'{"session":"s","samples":[' + payload + b"]}"
    assert accepts(decode_batch, batch) == accepts(TelemetryBatch.model_validate_json, batch)


def test_valid_cases_really_validate() -> None:
    assert accepts(decode_single, orjson.dumps(CASES[1]))
    assert not accepts(decode_single, RAW[2])


# Values a vendor might send: good ones and each way to get a field wrong.
any_value = st.one_of(
    st.integers(-(2**63), 2**64 - 1),  # what orjson can write
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(-9, 9), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(
    sess=st.one_of(session, st.text(max_size=70)),
    seq=st.one_of(st.integers(0, 2**63 - 1), any_value),
    ts=st.one_of(st.floats(946_684_800, 4_102_444_800), any_value),
    values=st.one_of(
        st.dictionaries(channel, finite, min_size=1, max_size=8),
        st.dictionaries(st.text(max_size=4), any_value, max_size=66),
        any_value,
    ),
    extra=st.booleans(),
)
def test_generated_payloads_are_judged_as_the_models_judge_them(
    sess: object, seq: object, ts: object, values: object, extra: bool
) -> None:
    body: dict[str, object] = {"session": sess, "seq": seq, "ts": ts, "v": values}
    if extra:
        body["unit"] = "x"
    payload = orjson.dumps(body)
    ok = accepts(Telemetry.model_validate_json, payload)
    assert accepts(decode_single, payload) == ok, payload
    if ok:  # and what passes comes out the same
        model = Telemetry.model_validate_json(payload)
        got_session, [sample] = decode_single(payload)
        assert (got_session, sample.seq, sample.ts, sample.v) == (
            model.session,
            model.seq,
            model.ts,
            model.v,
        )
    batch = b'{"session":' + orjson.dumps(sess) + b',"samples":[' + payload + b"]}"
    assert accepts(decode_batch, batch) == accepts(TelemetryBatch.model_validate_json, batch)
