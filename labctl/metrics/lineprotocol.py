"""InfluxDB line protocol: one point per line, escaped so InfluxDB reads back the exact strings.

The spool, the InfluxDB writers and any other sink share this one encoder. The rules follow the
InfluxDB line-protocol reference as implemented by InfluxDB's own parser (1.x, and 2.x which
shares it), checked against a real ``influxd`` 1.6 by ``tests/integration``:

* measurement: comma and space are escaped with a backslash;
* tag keys, tag values and field keys: comma, equals sign and space are escaped;
* string field values are double-quoted, with backslash and double quote escaped;
* integers get an ``i`` suffix, booleans are ``true``/``false``, floats the shortest digits
  that read back as the same double (orjson's, as :func:`repr` but ``1e-7`` for ``1e-07``)
  (NaN and infinities have no line-protocol form and raise :class:`ValueError`);
* tags are sorted by key (InfluxDB's recommendation: the server does less work);
* an empty tag value is omitted, because InfluxDB rejects ``tag=`` as a missing value.

Rejected rather than written (:class:`ValueError`, in words), because the server would
misread them:

* a newline anywhere: the spool and the write API frame points by newline, so a newline would
  split a point in two (InfluxDB 1.x does accept one inside a quoted string, but a torn
  spool segment could then not be told from a whole one);
* a backslash at the end of a measurement, tag key, tag value or field key: InfluxDB reads it
  as escaping the separator that follows, and the line protocol has no escape for it;
* a measurement starting with ``#`` (the line would be a comment) or with a tab or NUL
  (InfluxDB skips them as leading whitespace; a space is escaped), an empty measurement,
  tag key or field key, a point without fields, and the tag or field key ``time``.

Other backslashes are written literally, which InfluxDB reads back unchanged. VictoriaMetrics
parses backslashes differently: it reads ``\\\\`` as one backslash and skips (with a 204 and
only a log line of its own) a line where a backslash in a tag precedes an escaped character.
Keep backslashes out of tags for points meant for VictoriaMetrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

FieldValue = float | int | bool | str

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement at one instant: low-cardinality tags, values as fields, time in ns."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int


def encode(point: Point) -> bytes:
    """The point as one UTF-8 line of line protocol, ending with ``b"\\n"``."""
    prefix = encode_prefix(point.measurement, point.tags)
    return encode_line(prefix, point.fields, point.ts_ns).encode()


def encode_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,…`` head of a line, tags sorted by key.

    Compute it once per device or stream and pass it to :func:`encode_line` for every reading:
    the tags do not change between readings and escaping them is most of the cost.
    """
    if not measurement:
        raise ValueError("a point needs a measurement name; got an empty string")
    if measurement.startswith("#"):
        raise ValueError(
            f"measurement {measurement!r} starts with '#': "
            "InfluxDB would read the line as a comment"
        )
    if measurement[0] in "\t\x00":
        raise ValueError(
            f"measurement {measurement!r} starts with a tab or NUL, which InfluxDB skips as "
            "whitespace at the start of a line (and line protocol cannot escape)"
        )
    if "\\" in measurement:
        # influxd 1.6 reads escape sequences in measurement names inconsistently (a property
        # test against the real server found names that came back altered); labctl's own
        # measurements never need one, so refuse rather than write a name that changes.
        raise ValueError(f"measurement {measurement!r} contains a backslash; use a plain name")
    _check_identifier("measurement", measurement)
    parts = [measurement.replace(",", "\\,").replace(" ", "\\ ")]
    for key in sorted(tags):
        value = tags[key]
        if not isinstance(value, str):
            raise TypeError(f"tag {key!r} must be a string, got {type(value).__name__}")
        if value == "":
            continue  # InfluxDB rejects an empty tag value; no tag means the same
        if key == "" or key == "time":
            raise ValueError(f"tag key {key!r} is not allowed by InfluxDB")
        _check_identifier("tag key", key)
        _check_identifier(f"value of tag {key!r}", value)
        parts.append(f"{_escape_key(key)}={_escape_key(value)}")
    return ",".join(parts)


def encode_line(prefix: str, fields: Mapping[str, FieldValue], ts_ns: int) -> str:
    """One line (ending with ``"\\n"``) from a prefix made by :func:`encode_prefix`.

    This is the ingest hot path: one type test and one format per field.
    """
    out: list[str] = []
    for key, value in fields.items():
        # Field keys rarely hold special characters; test before paying for three replaces.
        ekey = _escape_key(key) if " " in key or "," in key or "=" in key else key
        if not key or key == "time" or "\n" in key or key[-1] == "\\":
            _check_field_key(key)
        kind = type(value)
        if kind is float:
            out.append(f"{ekey}={_float(key, value)}")  # type: ignore[arg-type]
        elif kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                raise ValueError(f"field {key!r}: integer {value} does not fit in 64 bits")
            out.append(f"{ekey}={value}i")
        elif kind is bool:
            out.append(f"{ekey}={'true' if value else 'false'}")
        elif kind is str:
            out.append(f"{ekey}={_string_field(key, value)}")  # type: ignore[arg-type]
        else:
            out.append(f"{ekey}={_other(key, value)}")
    if not out:
        raise ValueError(f"point {prefix!r} has no fields; InfluxDB needs at least one")
    return f"{prefix} {','.join(out)} {int(ts_ns)}\n"


def field_key(key: str) -> str:
    """A field key checked and escaped as :func:`encode_line` writes it (for callers that
    format lines themselves on a hot path and cache the result)."""
    _check_field_key(key)
    return _escape_key(key)


def string_value(key: str, value: str) -> str:
    """A string field's value escaped as :func:`encode_line` writes it, without the quotes."""
    return _string_field(key, value)[1:-1]


def _escape_key(s: str) -> str:
    # Backslash first would double the escapes we add; InfluxDB does not unescape "\\" in keys.
    return s.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _check_identifier(what: str, s: str) -> None:
    if "\n" in s:
        raise ValueError(f"{what} {s!r} contains a newline, which would split the line in two")
    if s.endswith("\\"):
        raise ValueError(
            f"{what} {s!r} ends with a backslash: InfluxDB would read it as escaping the "
            "separator after it, and line protocol has no way to write it"
        )


def _check_field_key(key: str) -> None:
    if not key or key == "time":
        raise ValueError(f"field key {key!r} is not allowed by InfluxDB")
    _check_identifier("field key", key)


def _float(key: str, value: float) -> str:
    if math.isfinite(value):
        # orjson's shortest round-trip digits: repr's, but "1e-7" for "1e-07". The spool
        # process formats readings with orjson in bulk; both must write the same bytes.
        return orjson.dumps(value).decode()
    raise ValueError(
        f"field {key!r} is {value}: line protocol has no NaN or infinity; "
        "leave the field out (no reading) instead"
    )


def _string_field(key: str, value: str) -> str:
    if "\n" in value:
        raise ValueError(
            f"string field {key!r} contains a newline, which the spool and the write API "
            "would read as the end of the point; replace it before encoding"
        )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _other(key: str, value: object) -> str:
    # Subclasses and numpy scalars: bool before int, since bool is an int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i" if _INT64_MIN <= value <= _INT64_MAX else _too_big(key, value)
    if isinstance(value, float):
        return _float(key, float(value))
    if isinstance(value, str):
        return _string_field(key, str(value))
    dtype = getattr(value, "dtype", None)  # numpy scalars
    if getattr(dtype, "kind", None) == "b":
        return "true" if value else "false"
    as_int = getattr(value, "__index__", None)  # numpy integers
    if as_int is not None:
        return _other(key, int(as_int()))
    as_float = getattr(value, "__float__", None)  # numpy floats of other widths
    if as_float is not None:
        return _float(key, float(as_float()))
    raise TypeError(
        f"field {key!r} has a {type(value).__name__}; fields must be float, int, bool or str"
    )


def _too_big(key: str, value: int) -> str:
    raise ValueError(f"field {key!r}: integer {value} does not fit in 64 bits")
