"""The ``labctl/1`` topic scheme: ``lab/v1/{vendor}/{device}/…``.

Building and parsing live together so the two can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "lab/v1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""Vendor and device names: ``[a-z0-9-]+``; a leading ``_`` is reserved for the lab."""

STREAM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class TopicKind(StrEnum):
    """What a device-side topic carries."""

    MANIFEST = "manifest"
    STATE = "state"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    CMD_REQ = "cmd_req"
    CMD_RES = "cmd_res"


class TopicError(ValueError):
    """A topic outside the ``labctl/1`` scheme."""


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device-side topic."""

    vendor: str
    device: str
    kind: TopicKind
    name: str | None = None
    """Telemetry stream, event kind or command id, when the kind has one."""


def is_valid_name(name: str) -> bool:
    """True for a vendor or device name allowed on the wire."""
    return bool(NAME_RE.match(name))


def device_root(vendor: str, device: str) -> str:
    """``lab/v1/{vendor}/{device}``, checked."""
    if not is_valid_name(vendor) or not is_valid_name(device):
        raise TopicError(f"invalid vendor or device name: {vendor!r}/{device!r}")
    return f"{ROOT}/{vendor}/{device}"


def manifest(vendor: str, device: str) -> str:
    """Topic of a device's retained manifest."""
    return f"{device_root(vendor, device)}/manifest"


def state(vendor: str, device: str) -> str:
    """Topic of a device's retained presence (and its Last Will)."""
    return f"{device_root(vendor, device)}/state"


def telemetry(vendor: str, device: str, stream: str) -> str:
    """Topic of one telemetry stream of a device."""
    if not STREAM_RE.match(stream):
        raise TopicError(f"invalid telemetry stream name: {stream!r}")
    return f"{device_root(vendor, device)}/telemetry/{stream}"


def command_request(vendor: str, device: str, command_id: str) -> str:
    """Topic on which the lab sends a command to a device."""
    return f"{device_root(vendor, device)}/cmd/{command_id}/req"


def command_response(vendor: str, device: str, command_id: str) -> str:
    """Topic on which a device answers a command."""
    return f"{device_root(vendor, device)}/cmd/{command_id}/res"


def stimulus(vendor: str, device: str, frame: str) -> str:
    """Topic on which the lab presents a frame (JPEG bytes) to a device under test."""
    return f"{device_root(vendor, device)}/stim/{frame}"


def events(vendor: str, device: str, kind: str) -> str:
    """Topic of one event kind of a device (e.g. ``detections``)."""
    if not STREAM_RE.match(kind):
        raise TopicError(f"invalid event kind: {kind!r}")
    return f"{device_root(vendor, device)}/events/{kind}"


def error(vendor: str, device: str) -> str:
    """Topic on which the lab explains why it rejected a device's message."""
    return f"{ROOT}/_err/{vendor}/{device}"


def controller_state(controller: str) -> str:
    """Retained presence of a controller."""
    return f"{ROOT}/_ctl/{controller}/state"


DEVICE_SUBSCRIPTIONS: tuple[str, ...] = (
    f"{ROOT}/+/+/manifest",
    f"{ROOT}/+/+/state",
    f"{ROOT}/+/+/telemetry/+",
    f"{ROOT}/+/+/events/+",
    f"{ROOT}/+/+/cmd/+/res",
)
"""What a controller subscribes to: everything devices publish."""


def parse(topic: str) -> DeviceTopic:
    """Parse a device-side topic; raise :class:`TopicError` with the reason in words."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "lab" or parts[1] != "v1":
        raise TopicError(f"topic {topic!r} is not under {ROOT}/{{vendor}}/{{device}}/")
    vendor, device = parts[2], parts[3]
    if not is_valid_name(vendor):
        raise TopicError(f"vendor name {vendor!r} is not [a-z0-9-]+")
    if not is_valid_name(device):
        raise TopicError(f"device name {device!r} is not [a-z0-9-]+")
    rest = parts[4:]
    head = rest[0]
    if head == "manifest" and len(rest) == 1:
        return DeviceTopic(vendor, device, TopicKind.MANIFEST)
    if head == "state" and len(rest) == 1:
        return DeviceTopic(vendor, device, TopicKind.STATE)
    if head in ("telemetry", "events") and len(rest) == 2:
        if not STREAM_RE.match(rest[1]):
            raise TopicError(f"{head} name {rest[1]!r} is not [a-z0-9_-]+")
        kind = TopicKind.TELEMETRY if head == "telemetry" else TopicKind.EVENTS
        return DeviceTopic(vendor, device, kind, rest[1])
    if head == "cmd" and len(rest) == 3 and rest[2] in ("req", "res"):
        kind = TopicKind.CMD_REQ if rest[2] == "req" else TopicKind.CMD_RES
        return DeviceTopic(vendor, device, kind, rest[1])
    raise TopicError(f"topic {topic!r} has no meaning in labctl/1")
