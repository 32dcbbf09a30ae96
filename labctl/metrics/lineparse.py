"""Parse the line protocol that :mod:`labctl.metrics.lineprotocol` writes, back into points.

This reads exactly what labctl writes (the spool is the lab's own store), with InfluxDB's
unescaping rules:

* measurement: a backslash before a comma or space escapes it;
* tag keys, tag values, field keys: a backslash before a comma, equals sign or space escapes it;
* any other backslash in those is literal (so ``\\\\ `` is a literal backslash then an escaped
  space, exactly as InfluxDB reads it — which is why a space right after a backslash never ends
  the series key);
* string fields are double-quoted; ``\\\\`` and ``\\"`` inside are a backslash and a quote;
* ``123i`` is an integer, ``123u`` an unsigned integer, ``true``/``false`` (and InfluxDB's other
  spellings) booleans, anything else a float.

Lines are framed by ``\\n`` only (never :meth:`str.splitlines`, which also splits on ``\\r``
and Unicode separators that may legally appear inside a value).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from labctl.metrics.lineprotocol import FieldValue, Point

_KEY = r"(?:[^,= \\]|\\[,= ]|\\)+"
_VALUE = r'"(?:[^"\\]|\\.)*"|[^," ]+'
_FIELD = re.compile(rf"({_KEY})=({_VALUE})([, ])", re.DOTALL)
_TAG_SEP = re.compile(r"(?<!\\),")
_TAG_EQ = re.compile(r"(?<!\\)=")
_UNESCAPE_KEY = re.compile(r"\\([,= ])")
_UNESCAPE_MEASUREMENT = re.compile(r"\\([, ])")
_UNESCAPE_STRING = re.compile(r'\\([\\"])')
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})


class LineParseError(ValueError):
    """A line that is not line protocol as labctl writes it; the message says where."""


def parse_line(line: str) -> Point:
    """One line (with or without its trailing newline) as a :class:`Point`."""
    series, fields, ts = split_line(line)
    measurement, tags = parse_series(series)
    return Point(measurement, dict(tags), parse_fields(fields), ts)


def split_line(line: str) -> tuple[str, str, int]:
    """A line's series key, its (still escaped) field section and its timestamp in ns."""
    if line.endswith("\n"):
        line = line[:-1]
    # The series key ends at the first space that no backslash escapes.
    i = line.find(" ")
    while i > 0 and line[i - 1] == "\\":
        i = line.find(" ", i + 1)
    # The timestamp holds no space and nothing follows it: the last space ends the fields.
    j = line.rfind(" ")
    if i <= 0 or j <= i:
        raise LineParseError(f"not series, fields and a timestamp: {line[:200]!r}")
    ts = line[j + 1 :]
    if not (ts.isascii() and ts.lstrip("-").isdigit()):
        raise LineParseError(f"bad timestamp {ts[:40]!r}: {line[:200]!r}")
    return line[:i], line[i + 1 : j], int(ts)


def parse_fields(section: str) -> dict[str, FieldValue]:
    """``key=value,…`` into typed field values."""
    fast = _fields_fast(section)
    return fast if fast is not None else _fields_full(section)


@lru_cache(maxsize=4096)
def parse_series(series: str) -> tuple[str, dict[str, str]]:
    """``measurement,tag=value,…`` into the measurement and its tags.

    Cached: every reading of one device stream shares its series key. Callers must not
    modify the returned dict.
    """
    parts = _TAG_SEP.split(series)
    # A literal backslash right before a comma ("a\\,b" in the file, from "a\" + ",b") can
    # only occur as an escaped comma here, because a trailing backslash is never written.
    measurement = _UNESCAPE_MEASUREMENT.sub(r"\1", parts[0])
    if not measurement:
        raise LineParseError(f"empty measurement in {series[:200]!r}")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _TAG_EQ.split(part, maxsplit=1)
        if len(kv) != 2 or not kv[0]:
            raise LineParseError(f"tag {part!r} is not key=value in {series[:200]!r}")
        tags[_UNESCAPE_KEY.sub(r"\1", kv[0])] = _UNESCAPE_KEY.sub(r"\1", kv[1])
    return measurement, tags


def _fields_fast(section: str) -> dict[str, FieldValue] | None:
    """Fields without any backslash, split on commas; None when that could be ambiguous.

    Without a backslash no string value can hold a double quote, so a comma inside a string
    always leaves a piece whose value opens a quote it does not close: then the full parser
    decides.
    """
    if "\\" in section:
        return None
    out: dict[str, FieldValue] = {}
    for part in section.split(","):
        key, eq, raw = part.partition("=")
        if not eq or not key or not raw:
            return None
        if raw[0] == '"':
            if len(raw) < 2 or raw[-1] != '"' or '"' in raw[1:-1]:
                return None
            out[key] = raw[1:-1]
        elif '"' in raw:
            return None
        else:
            out[key] = _value(raw)
    return out


def _fields_full(section: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    text = section + " "
    pos = 0
    while True:
        m = _FIELD.match(text, pos)
        if m is None:
            raise LineParseError(f"bad field at column {pos}: {section[:200]!r}")
        key, raw, sep = m.groups()
        if "\\" in key:
            key = _UNESCAPE_KEY.sub(r"\1", key)
        fields[key] = _UNESCAPE_STRING.sub(r"\1", raw[1:-1]) if raw[0] == '"' else _value(raw)
        pos = m.end()
        if sep == " ":
            if pos != len(text):
                raise LineParseError(f"unexpected text after the fields: {section[:200]!r}")
            return fields


def _value(raw: str) -> FieldValue:
    last = raw[-1]
    try:
        if last == "i" or last == "u":
            return int(raw[:-1])
        if raw[0] in "tTfF":
            if raw in _TRUE:
                return True
            if raw in _FALSE:
                return False
        return float(raw)
    except ValueError:
        raise LineParseError(f"bad field value {raw!r}") from None


def iter_lines(data: bytes) -> Iterator[str]:
    """The lines of a chunk of whole lines, split on ``\\n`` only, without empty ones."""
    for raw in data.split(b"\n"):
        if raw:
            yield raw.decode("utf-8")
