"""The line-protocol parser reads back exactly what the encoder writes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.metrics.lineparse import LineParseError, iter_lines, parse_line
from labctl.metrics.lineprotocol import FieldValue, encode_line, encode_prefix

# Any text but newlines (the encoder refuses them); includes \r, quotes, backslashes, Unicode.
text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=12)
names = text.filter(lambda s: s != "")
values: st.SearchStrategy[FieldValue] = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    text,
)


@settings(max_examples=400, deadline=None)
@given(
    measurement=names,
    tags=st.dictionaries(names, text, max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=5),
    ts=st.integers(min_value=-(2**62), max_value=2**62),
)
def test_round_trip(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int
) -> None:
    try:
        line = encode_line(encode_prefix(measurement, tags), fields, ts)
    except ValueError:
        return  # the encoder refuses it in words; nothing is written, nothing to read
    p = parse_line(line)
    assert p.measurement == measurement
    assert p.tags == {k: v for k, v in tags.items() if v != ""}
    assert p.ts_ns == ts
    assert set(p.fields) == set(fields)
    for k, v in fields.items():
        got = p.fields[k]
        assert type(got) is type(v), (k, v, got)
        if isinstance(v, float):
            assert got == v or (math.isnan(v) and math.isnan(float(got)))
        else:
            assert got == v


def test_telemetry_line_as_labctl_writes_it() -> None:
    prefix = encode_prefix(
        "telemetry", {"run": "r 1", "vendor": "a,b", "device": "d=1", "role": "dut"}
    )
    line = encode_line(prefix, {"pm25": 12.5, "seq": 7, "session": 'x "y", z\\'}, 10**18)
    p = parse_line(line)
    assert p.tags == {"run": "r 1", "vendor": "a,b", "device": "d=1", "role": "dut"}
    assert p.fields == {"pm25": 12.5, "seq": 7, "session": 'x "y", z\\'}


def test_lines_split_on_newline_only() -> None:
    a = encode_line(encode_prefix("m", {}), {"s": "a\rb\u2028c"}, 1)
    b = encode_line(encode_prefix("m", {}), {"v": 1.0}, 2)
    lines = list(iter_lines((a + b).encode()))
    assert [parse_line(x).ts_ns for x in lines] == [1, 2]
    assert parse_line(lines[0]).fields["s"] == "a\rb\u2028c"


@pytest.mark.parametrize("bad", ["m", "m v=1", "m v=1 x", "m v= 1", 'm v="a 1'])
def test_garbage_is_refused_in_words(bad: str) -> None:
    with pytest.raises(LineParseError):
        parse_line(bad)
