"""Readings packed for the spool process come out as the same line protocol."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.metrics.points import PointEncoder, RunTags, format_block
from labctl.metrics.spool_wire import pack_block, unpack_block
from labctl.readings import DeviceRef, Reading

channel = st.from_regex(r"[a-z0-9][a-z0-9_]{0,8}", fullmatch=True)
session = st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
number = st.one_of(finite, st.integers(-(2**53), 2**53))


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    """Several streams, devices and sessions interleaved, keys varying mid-stream."""
    devices = [DeviceRef("acme", f"d-{i}") for i in range(draw(st.integers(1, 3)))]
    out = []
    for seq in range(draw(st.integers(0, 40))):
        keys = draw(st.lists(channel, min_size=1, max_size=7, unique=True))
        out.append(
            Reading(
                draw(st.sampled_from(devices)),
                draw(st.sampled_from(["air", "main"])),
                draw(session),
                seq * draw(st.integers(1, 2**40)),
                draw(st.floats(946_684_800, 4_102_444_800)),
                {k: draw(number) for k in keys},
                0,
            )
        )
    return out


@settings(max_examples=100, deadline=None)
@given(rs=readings(), text=st.sampled_from([b"", b"event,kind=x name=\"y\" 1\n"]))
def test_a_block_survives_the_wire_byte_for_byte(rs: list[Reading], text: bytes) -> None:
    enc = PointEncoder("rig a", lambda r: "dut", lambda r: RunTags("r1", "t 1"))
    block = enc.pack(rs)
    header, body = pack_block(block, text)
    back, rest = unpack_block(header, body)
    assert rest == text
    assert format_block(back) == enc.readings(rs).encode()
    assert format_block(back).count(b"\n") == len(rs)


def test_a_header_that_disagrees_with_its_body_is_refused() -> None:
    enc = PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r", "t"))
    ref = DeviceRef("acme", "d")
    rs = [Reading(ref, "s", "x", i, 1.8e9 + i, {"a": 1.0, "b": 2.0}, 0) for i in range(5)]
    block = enc.pack(rs)
    header, body = pack_block(block, b"")
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_block({**header, "readings": 50}, body)
    with pytest.raises(ValueError, match="groups hold"):
        unpack_block({**header, "values": 8}, body)


def test_a_non_finite_value_is_refused_before_it_leaves_the_controller() -> None:
    enc = PointEncoder("rig", lambda r: "dut", lambda r: RunTags("r", "t"))
    ref = DeviceRef("acme", "d")
    good = Reading(ref, "s", "x", 1, 1.8e9, {"a": 1.0}, 0)
    bad = Reading(ref, "s", "x", 2, 1.8e9, {"a": float("inf")}, 0)
    with pytest.raises(ValueError, match="'a' is inf"):
        enc.pack([good, bad])
    # a finite sum that overflows is not mistaken for a bad value
    big = [Reading(ref, "s", "x", i, 1.8e9 + i, {"a": 1.7e308}, 0) for i in range(3)]
    assert len(format_block(enc.pack(big)).splitlines()) == 3
