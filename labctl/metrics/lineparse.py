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
_SERIES_END = re.compile(r"(?<!\\) ")
_TS = re.compile(r"-?\d+")
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
    if line.endswith("\n"):
        line = line[:-1]
    m = _SERIES_END.search(line)
    if m is None:
        raise LineParseError(f"no space after the series key: {line[:200]!r}")
    measurement, tags = parse_series(line[: m.start()])
    fields, pos = _parse_fields(line, m.end())
    ts = _TS.fullmatch(line, pos)
    if ts is None:
        raise LineParseError(f"bad or missing timestamp at column {pos}: {line[:200]!r}")
    return Point(measurement, tags, fields, int(ts.group()))


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


def _parse_fields(line: str, pos: int) -> tuple[dict[str, FieldValue], int]:
    fields: dict[str, FieldValue] = {}
    while True:
        m = _FIELD.match(line, pos)
        if m is None:
            raise LineParseError(f"bad field at column {pos}: {line[:200]!r}")
        key, raw, sep = m.groups()
        fields[_UNESCAPE_KEY.sub(r"\1", key)] = _value(raw)
        pos = m.end()
        if sep == " ":
            return fields, pos


def _value(raw: str) -> FieldValue:
    if raw[0] == '"':
        return _UNESCAPE_STRING.sub(r"\1", raw[1:-1])
    last = raw[-1]
    if last == "i" or last == "u":
        try:
            return int(raw[:-1])
        except ValueError:
            raise LineParseError(f"bad integer field value {raw!r}") from None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    try:
        return float(raw)
    except ValueError:
        raise LineParseError(f"bad field value {raw!r}") from None


def iter_lines(data: bytes) -> Iterator[str]:
    """The lines of a chunk of whole lines, split on ``\\n`` only, without empty ones."""
    for raw in data.split(b"\n"):
        if raw:
            yield raw.decode("utf-8")
