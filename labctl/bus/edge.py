"""The edge: every inbound message is checked here before anything else sees it.

A message that fails a check is dropped, counted, and explained (the controller publishes the
explanation on ``lab/v1/_err/{vendor}/{device}``); it never raises out of here and never
reaches a trial. What passes becomes typed: manifests, presence and readings.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from labctl.bus.mqtt import InboundMessage
from labctl.drivers import TelemetryDriver
from labctl.protocol import topics
from labctl.protocol.inbound import InboundError, decode_telemetry
from labctl.protocol.payloads import (
    MAX_EVENT_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_TELEMETRY_BYTES,
    CommandResponse,
    Detections,
    Manifest,
    State,
)
from labctl.readings import DeviceRef, Reading
from labctl.rig.directory import DeviceDirectory, DeviceRecord

log = logging.getLogger(__name__)

LAB_RESERVED = f"{topics.ROOT}/_"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one message was dropped."""

    topic: str
    vendor: str | None
    device: str | None
    reason: str
    """Short code: ``topic``, ``too_large``, ``json``, ``schema``, ``identity``,
    ``unknown_device``, ``quarantined``, ``channel``, ``manifest``."""
    detail: str
    """The explanation in words, as sent to the vendor."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A device's state changed (or its manifest arrived)."""

    device: DeviceRef
    state: str
    session: str
    received_ns: int = 0
    ts: float | None = None
    """The device clock in the state payload, when it sent one."""


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """A validated ``events/detections`` message."""

    device: DeviceRef
    detections: Detections
    received_ns: int


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A validated command response from a device."""

    device: DeviceRef
    response: CommandResponse
    received_ns: int


@dataclass
class EdgeResult:
    """What one batch of inbound messages turned into."""

    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    presence: list[PresenceChange] = field(default_factory=list)
    duplicates: int = 0
    replies: list[CommandReply] = field(default_factory=list)
    detections: list[DetectionEvent] = field(default_factory=list)
    other: list[InboundMessage] = field(default_factory=list)
    """Valid-topic messages this layer does not interpret (event kinds it does not know)."""


@dataclass
class EdgeCounters:
    """Running totals for progress and the run record."""

    accepted_readings: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        """All rejected messages."""
        return sum(self.rejected.values())


class Edge:
    """Validates inbound messages against ``labctl/1`` and the device directory."""

    def __init__(self, directory: DeviceDirectory, driver: TelemetryDriver) -> None:
        self.directory = directory
        self.driver = driver
        self.counters = EdgeCounters()

    def process(self, batch: Sequence[InboundMessage]) -> EdgeResult:
        """Classify and validate a batch; never raises for bad input."""
        out = EdgeResult()
        for msg in batch:
            try:
                self._one(msg, out)
            except Exception as exc:  # a bug must not take the controller down with it
                log.exception("unexpected error handling a message on %s", msg.topic)
                self._reject(out, msg.topic, None, None, "internal", f"controller error: {exc}")
        self.counters.accepted_readings += len(out.readings)
        self.counters.duplicates += out.duplicates
        for r in out.rejections:
            self.counters.rejected[r.reason] += 1
        return out

    def _reject(
        self,
        out: EdgeResult,
        topic: str,
        vendor: str | None,
        device: str | None,
        reason: str,
        detail: str,
    ) -> None:
        out.rejections.append(Rejection(topic, vendor, device, reason, detail))
        if vendor and device:
            rec = self.directory.get(DeviceRef(vendor, device))
            if rec is not None:
                rec.rejected += 1
                rec.last_errors.append(f"{reason}: {detail}")

    def _one(self, msg: InboundMessage, out: EdgeResult) -> None:
        if msg.topic.startswith(LAB_RESERVED):
            # The lab's own topics (_ctl presence, _err replies) match the device wildcards;
            # they are not device traffic. Vendors cannot publish there (the broker ACL).
            return
        try:
            t = topics.parse(msg.topic)
        except topics.TopicError as exc:
            self._reject(out, msg.topic, None, None, "topic", str(exc))
            return
        ref = DeviceRef(t.vendor, t.device)
        kind = t.kind
        if kind is topics.TopicKind.MANIFEST:
            self._manifest(msg, ref, out)
        elif kind is topics.TopicKind.STATE:
            self._state(msg, ref, out)
        elif kind is topics.TopicKind.TELEMETRY:
            assert t.name is not None
            self._telemetry(msg, ref, t.name, out)
        elif kind is topics.TopicKind.EVENTS and t.name == "detections":
            self._detections(msg, ref, out)
        elif kind is topics.TopicKind.CMD_RES:
            self._reply(msg, ref, t.name or "", out)
        elif kind is topics.TopicKind.CMD_REQ:
            self._reject(
                out,
                msg.topic,
                t.vendor,
                t.device,
                "topic",
                "devices must not publish command requests",
            )
        else:
            out.other.append(msg)

    def _manifest(self, msg: InboundMessage, ref: DeviceRef, out: EdgeResult) -> None:
        if not msg.payload:  # an empty retained publish clears the manifest
            self.directory.forget(ref)
            return
        if len(msg.payload) > MAX_MANIFEST_BYTES:
            self._quarantine(
                out,
                msg,
                ref,
                "too_large",
                f"manifest is {len(msg.payload)} bytes; the limit is {MAX_MANIFEST_BYTES}",
            )
            return
        try:
            manifest = Manifest.model_validate_json(msg.payload)
        except ValidationError as exc:
            self._quarantine(out, msg, ref, _reason(exc), _explain(exc))
            return
        if manifest.device.vendor != ref.vendor or manifest.device.id != ref.device:
            self._quarantine(
                out,
                msg,
                ref,
                "identity",
                f"manifest says {manifest.device.vendor}/{manifest.device.id} but "
                f"was published on {ref.key}'s topic",
            )
            return
        problem = self.directory.apply_manifest(ref, manifest)
        if problem is not None:
            self._reject(out, msg.topic, ref.vendor, ref.device, "manifest", problem)
            return
        out.presence.append(PresenceChange(ref, "manifest", manifest.session, msg.received_ns))

    def _reply(self, msg: InboundMessage, ref: DeviceRef, cid: str, out: EdgeResult) -> None:
        if len(msg.payload) > MAX_TELEMETRY_BYTES:
            self._reject(
                out,
                msg.topic,
                ref.vendor,
                ref.device,
                "too_large",
                f"command response is {len(msg.payload)} bytes",
            )
            return
        try:
            res = CommandResponse.model_validate_json(msg.payload)
        except ValidationError as exc:
            self._reject(out, msg.topic, ref.vendor, ref.device, _reason(exc), _explain(exc))
            return
        if res.id != cid:
            self._reject(
                out,
                msg.topic,
                ref.vendor,
                ref.device,
                "identity",
                f"response id {res.id!r} does not match the topic's command id {cid!r}",
            )
            return
        out.replies.append(CommandReply(ref, res, msg.received_ns))

    def _quarantine(
        self, out: EdgeResult, msg: InboundMessage, ref: DeviceRef, reason: str, detail: str
    ) -> None:
        rec = self.directory.record(ref)
        rec.quarantined = detail
        rec.manifest = None
        self._reject(out, msg.topic, ref.vendor, ref.device, reason, detail)

    def _state(self, msg: InboundMessage, ref: DeviceRef, out: EdgeResult) -> None:
        if not msg.payload:
            return
        try:
            state = State.model_validate_json(msg.payload)
        except ValidationError as exc:
            self._reject(out, msg.topic, ref.vendor, ref.device, _reason(exc), _explain(exc))
            return
        if self.directory.apply_state(ref, state):
            out.presence.append(
                PresenceChange(ref, state.state, state.session, msg.received_ns, state.ts)
            )

    def _sender(
        self, msg: InboundMessage, ref: DeviceRef, out: EdgeResult, what: str, limit: int
    ) -> DeviceRecord | None:
        """The record of a device allowed to send data: the message within ``limit`` bytes
        and a valid manifest on file. Otherwise the message is rejected and None returned."""
        if len(msg.payload) > limit:
            self._reject(
                out,
                msg.topic,
                ref.vendor,
                ref.device,
                "too_large",
                f"{what} is {len(msg.payload)} bytes; the limit is {limit}",
            )
            return None
        rec = self.directory.get(ref)
        if rec is None or rec.manifest is None:
            quarantined = rec is not None and bool(rec.quarantined)
            why = (
                f"device is quarantined: {rec.quarantined}"
                if rec is not None and quarantined
                else "no valid manifest from this device; publish one (retained) first"
            )
            reason = "quarantined" if quarantined else "unknown_device"
            self._reject(out, msg.topic, ref.vendor, ref.device, reason, why)
            return None
        return rec

    def _detections(self, msg: InboundMessage, ref: DeviceRef, out: EdgeResult) -> None:
        rec = self._sender(msg, ref, out, "detections", MAX_EVENT_BYTES)
        if rec is None:
            return
        try:
            det = Detections.model_validate_json(msg.payload)
        except ValidationError as exc:
            self._reject(out, msg.topic, ref.vendor, ref.device, _reason(exc), _explain(exc))
            return
        rec.last_seen = msg.received_ns / 1e9
        out.detections.append(DetectionEvent(ref, det, msg.received_ns))

    def _telemetry(self, msg: InboundMessage, ref: DeviceRef, stream: str, out: EdgeResult) -> None:
        payload = msg.payload
        rec = self._sender(msg, ref, out, "telemetry", MAX_TELEMETRY_BYTES)
        if rec is None or rec.manifest is None:
            return
        try:
            session, samples = decode_telemetry(payload)
        except InboundError as exc:
            self._reject(out, msg.topic, ref.vendor, ref.device, exc.reason, exc.detail)
            return
        fresh = rec.sequences.accept_samples(session, samples)
        dup = len(samples) - len(fresh)
        out.duplicates += dup
        rec.duplicates += dup
        if not fresh:
            return
        try:
            readings = self.driver.decode(
                ref, rec.manifest, stream, session, fresh, msg.received_ns
            )
        except ValueError as exc:
            self._reject(out, msg.topic, ref.vendor, ref.device, "channel", str(exc))
            return
        rec.readings += len(readings)
        rec.last_seen = msg.received_ns / 1e9
        out.readings.extend(readings)


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]["type"] if exc.errors() else ""
    return "json" if first in ("json_invalid", "json_type") else "schema"


def _explain(exc: ValidationError, limit: int = 5) -> str:
    """A validation error in words: ``field: problem; …``."""
    parts = []
    for e in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in e["loc"]) or "payload"
        msg = e["msg"]
        if e["type"] == "json_invalid":
            msg = f"not valid JSON ({e.get('ctx', {}).get('error', msg)})"
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def error_payload(rej: Rejection, now: float) -> bytes:
    """The JSON published on ``_err`` for a rejection."""
    return orjson.dumps({"topic": rej.topic, "reason": rej.reason, "detail": rej.detail, "ts": now})
