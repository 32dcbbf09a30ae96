"""The inbound telemetry hot path: ``…/telemetry/{stream}`` payloads decoded and validated in
one pass by msgspec.

The pydantic models in :mod:`labctl.protocol.payloads` are the documented schema and what
producers (simulators, tools) serialise; a unit test holds these structs to the same
accept/reject behaviour on hand-picked and generated payloads. The ingest path uses msgspec
because it validates while it parses, straight into objects the garbage collector need not
track: about a third of the controller's CPU per reading went into pydantic here
(benchmarks/ingest.py, ``docs/ingest.md``).

Errors come out as :class:`InboundError` with the edge's reason codes and a detail in words.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from labctl.protocol.payloads import MAX_BATCH_SAMPLES, MAX_VALUES_PER_SAMPLE, TS_MAX, TS_MIN

# \Z, not $: Python's $ also matches before a final newline (the pydantic models use Rust's
# regex, where it does not).
_SESSION = r"^[A-Za-z0-9_.:-]+\Z"
_INT64_MAX = 2**63 - 1

Seq = Annotated[int, Meta(ge=0, le=_INT64_MAX)]
EpochSeconds = Annotated[float, Meta(ge=TS_MIN, le=TS_MAX)]
Values = Annotated[dict[str, float], Meta(min_length=1, max_length=MAX_VALUES_PER_SAMPLE)]
Session = Annotated[str, Meta(min_length=1, max_length=64, pattern=_SESSION)]


class SampleIn(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One validated inbound sample: ``seq``, ``ts`` (device clock, epoch seconds) and ``v``
    (channel → value; keys are checked against the manifest by the driver).

    ``gc=False``: it holds a sequence number, a time and a dict of floats, so it can never be
    part of a reference cycle, and the collector need not walk the thousands a batch holds.
    """

    seq: Seq
    ts: EpochSeconds
    v: Values


class TelemetryIn(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One validated single-sample message."""

    session: Session
    seq: Seq
    ts: EpochSeconds
    v: Values


class TelemetryBatchIn(Struct, forbid_unknown_fields=True, frozen=True):
    """One validated batch (store-and-forward)."""

    session: Session
    samples: Annotated[list[SampleIn], Meta(min_length=1, max_length=MAX_BATCH_SAMPLES)]


class InboundError(ValueError):
    """A telemetry payload the edge rejects: ``reason`` is ``json`` or ``schema``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_SINGLE = msgspec.json.Decoder(TelemetryIn)
_BATCH = msgspec.json.Decoder(TelemetryBatchIn)
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_BYTE = re.compile(r"\(byte (?P<at>\d+)\)")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NOT_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"+Infinity")


def decode_single(payload: bytes) -> tuple[str, list[SampleIn]]:
    """A single-sample message as ``(session, [sample])``; :class:`InboundError` if invalid."""
    try:
        one = _SINGLE.decode(payload)
    except msgspec.DecodeError as exc:
        raise _explain(exc, payload) from None
    return one.session, [SampleIn(one.seq, one.ts, one.v)]


def decode_batch(payload: bytes) -> tuple[str, list[SampleIn]]:
    """A batch as ``(session, samples)``; :class:`InboundError` if invalid."""
    try:
        batch = _BATCH.decode(payload)
    except msgspec.DecodeError as exc:
        raise _explain(exc, payload) from None
    return batch.session, batch.samples


def decode_telemetry(payload: bytes) -> tuple[str, list[SampleIn]]:
    """A batch or a single sample. A cheap byte test picks the likely form; a channel that
    happens to be called ``samples`` falls back to the single form. When both forms fail, the
    error reported is the likely form's."""
    batch_first = b'"samples"' in payload
    first, second = (decode_batch, decode_single) if batch_first else (decode_single, decode_batch)
    try:
        return first(payload)
    except InboundError as exc:
        if exc.reason == "json":
            raise
        try:
            return second(payload)
        except InboundError:
            raise exc from None


def _explain(exc: msgspec.DecodeError, payload: bytes) -> InboundError:
    """msgspec's message in the edge's words: ``field.path: problem``."""
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        at = _BYTE.search(text)
        pos = int(at["at"]) if at else -1
        if pos > 0 and payload[pos - 1 : pos] in (b"-", b"+"):
            pos -= 1
        if pos >= 0 and payload[pos:].startswith(_NOT_FINITE):
            # NaN and ±Infinity are not JSON, but the vendor meant a number: say so.
            word = re.split(rb"[,}\]\s]", payload[pos:], maxsplit=1)[0]
            return InboundError(
                "schema",
                f"byte {pos}: {word.decode('ascii', 'replace')} is not a finite number "
                "(values must be finite)",
            )
        problem = text.removeprefix("JSON is malformed: ")
        return InboundError("json", f"payload: not valid JSON ({problem})")
    m = _AT.search(text)
    problem = text[: m.start()] if m else text
    path = _path(m["path"], payload) if m else "payload"
    return InboundError("schema", f"{path}: {_lower(problem)}")


def _path(raw: str, payload: bytes) -> str:
    """``.samples[0].v[...]`` → ``samples.0.v.pm25``: msgspec does not name the dict key whose
    value failed, so on this (rare) path the payload is read again to find it."""
    out: list[str] = []
    node: object = _loads(payload)
    for name, index in _STEP.findall(raw):
        if name:
            out.append(name)
            node = node.get(name) if isinstance(node, dict) else None
        elif index != "...":
            out.append(index)
            i = int(index)
            node = node[i] if isinstance(node, list) and i < len(node) else None
        else:
            key = _bad_value_key(node)
            out.append(key if key is not None else "[...]")
            node = None
    return ".".join(out).replace(".[...]", "[...]") or "payload"


def _loads(payload: bytes) -> object:
    # The standard library's parser: it reads 1e999 as infinity, which names the culprit.
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _bad_value_key(node: object) -> str | None:
    """The first key of a channel dict whose value is not a finite number."""
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value):
            return str(key)
    return None


def _lower(s: str) -> str:
    return s[:1].lower() + s[1:]
