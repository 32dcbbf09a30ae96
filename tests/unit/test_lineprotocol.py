"""Exact encodings of tricky points (the round trip through a real influxd is in integration)."""

from __future__ import annotations

import math

import pytest

from labctl.metrics.lineprotocol import Point, encode, encode_line, encode_prefix


def line(measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int = 1) -> str:
    return encode(Point(measurement, tags, fields, ts)).decode()  # type: ignore[arg-type]


def test_plain_point_sorted_tags_and_types() -> None:
    got = line("air", {"z": "1", "a": "x"}, {"pm25": 12.5, "n": 3, "ok": True, "s": "hi"}, 17)
    assert got == 'air,a=x,z=1 pm25=12.5,n=3i,ok=true,s="hi" 17\n'


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        ("a b", "a\\ b"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),  # '=' is not special in a measurement
        ('a"b', 'a"b'),
        ("ü°C", "ü°C"),
    ],
)
def test_measurement_escaping(measurement: str, expected: str) -> None:
    assert line(measurement, {}, {"v": 1.0}) == f"{expected} v=1.0 1\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a b", "a\\ b"),
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        ('a"b', 'a"b'),  # quotes are literal outside string field values
        ("a\\b", "a\\b"),
        ("a\\,b", "a\\\\,b"),  # literal backslash, then the escaped comma
        ("Straße東京🚦", "Straße東京🚦"),
        ("\\x", "\\x"),
    ],
)
def test_tag_and_field_key_escaping(raw: str, expected: str) -> None:
    assert line("m", {raw: raw}, {raw: 1}) == f"m,{expected}={expected} {expected}=1i 1\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("trailing\\", '"trailing\\\\"'),  # fine inside quotes: escaped
        ("a,b c=d", '"a,b c=d"'),  # nothing else is special inside quotes
        ("", '""'),
        ("tab\tcr\r", '"tab\tcr\r"'),
        ("ünï ✓", '"ünï ✓"'),
    ],
)
def test_string_field_values(raw: str, expected: str) -> None:
    assert line("m", {}, {"s": raw}) == f"m s={expected} 1\n"


def test_numbers() -> None:
    got = line("m", {}, {"a": 1e16, "b": -0.0, "c": 1.5e-7, "d": -(2**63), "e": 2**63 - 1})
    assert got == f"m a=1e+16,b=-0.0,c=1.5e-7,d={-(2**63)}i,e={2**63 - 1}i 1\n"
    assert line("m", {}, {"f": False}) == "m f=false 1\n"


def test_float_repr_round_trips() -> None:
    x = 0.1 + 0.2
    assert float(line("m", {}, {"x": x}).split("=")[1].split()[0]) == x


def test_empty_tag_value_is_left_out() -> None:
    assert line("m", {"a": "", "b": "x"}, {"v": 1}) == "m,b=x v=1i 1\n"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_in_words(bad: float) -> None:
    with pytest.raises(ValueError, match="no NaN or infinity"):
        line("m", {}, {"v": bad})


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "match"),
    [
        ("m", {"t": "a\nb"}, {"v": 1}, "newline"),
        ("m", {"t\n": "a"}, {"v": 1}, "newline"),
        ("m\n", {}, {"v": 1}, "newline"),
        ("m", {}, {"v\n": 1}, "newline"),
        ("m", {}, {"s": "line1\nline2"}, "newline"),
        ("m", {"t": "a\\"}, {"v": 1}, "ends with a backslash"),
        ("m", {"t\\": "a"}, {"v": 1}, "ends with a backslash"),
        ("m\\", {}, {"v": 1}, "contains a backslash"),
        ("a\\b", {}, {"v": 1}, "contains a backslash"),
        ("m", {}, {"v\\": 1}, "ends with a backslash"),
        ("#m", {}, {"v": 1}, "comment"),
        ("\tm", {}, {"v": 1}, "tab or NUL"),
        ("\x00m", {}, {"v": 1}, "tab or NUL"),
        ("", {}, {"v": 1}, "measurement"),
        ("m", {}, {}, "no fields"),
        ("m", {"time": "x"}, {"v": 1}, "not allowed"),
        ("m", {}, {"time": 1}, "not allowed"),
        ("m", {}, {"": 1}, "not allowed"),
        ("m", {}, {"i": 2**63}, "64 bits"),
    ],
)
def test_unwritable_points_are_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        line(measurement, tags, fields)


def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError, match="fields must be"):
        line("m", {}, {"v": [1]})
    with pytest.raises(TypeError, match="must be a string"):
        line("m", {"t": 1}, {"v": 1})  # type: ignore[dict-item]


def test_int_and_float_subclasses_and_numpy_scalars() -> None:
    import numpy as np

    fields = {"a": np.float64(0.5), "b": np.int64(7), "c": np.float32(0.25), "d": np.bool_(True)}
    got = line("m", {}, fields)
    assert got == "m a=0.5,b=7i,c=0.25,d=true 1\n"


def test_hot_path_helpers_match_encode() -> None:
    prefix = encode_prefix("air quality", {"device": "pm-1", "run": "r 1"})
    assert prefix == "air\\ quality,device=pm-1,run=r\\ 1"
    got = encode_line(prefix, {"pm25": 3.0}, 5)
    assert got == "air\\ quality,device=pm-1,run=r\\ 1 pm25=3.0 5\n"
    assert encode(Point("air quality", {"run": "r 1", "device": "pm-1"}, {"pm25": 3.0}, 5)) == (
        b"air\\ quality,device=pm-1,run=r\\ 1 pm25=3.0 5\n"
    )


def test_point_is_frozen() -> None:
    p = Point("m", {}, {"v": 1}, 1)
    with pytest.raises(AttributeError):
        p.ts_ns = 2  # type: ignore[misc]
