"""What the controller knows of the devices on its bus: manifests, presence, rejections."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from labctl.protocol.payloads import Manifest, State
from labctl.readings import DeviceRef
from labctl.rig.sequence import SequenceTracker


@dataclass
class DeviceRecord:
    """The controller's view of one device."""

    ref: DeviceRef
    manifest: Manifest | None = None
    state: str = "unknown"
    session: str | None = None
    last_seen: float = 0.0
    rejected: int = 0
    quarantined: str | None = None
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    sequences: SequenceTracker = field(default_factory=SequenceTracker)
    readings: int = 0
    duplicates: int = 0


class DeviceDirectory:
    """Device records keyed by ``vendor/device``, updated from manifests and presence."""

    def __init__(self, max_devices: int = 10_000) -> None:
        self._devices: dict[DeviceRef, DeviceRecord] = {}
        self._max = max_devices

    def get(self, ref: DeviceRef) -> DeviceRecord | None:
        """The record of ``ref`` if the controller has heard of it."""
        return self._devices.get(ref)

    def record(self, ref: DeviceRef) -> DeviceRecord:
        """The record of ``ref``, created on first sight (bounded)."""
        rec = self._devices.get(ref)
        if rec is None:
            if len(self._devices) >= self._max:
                raise OverflowError(f"more than {self._max} devices on the bus")
            rec = self._devices[ref] = DeviceRecord(ref)
        return rec

    def all(self) -> list[DeviceRecord]:
        """Every known device, sorted by key."""
        return sorted(self._devices.values(), key=lambda r: r.ref.key)

    def apply_manifest(self, ref: DeviceRef, manifest: Manifest) -> str | None:
        """Take a validated manifest; return why it is refused, or None."""
        rec = self.record(ref)
        old = rec.manifest
        if old is not None and manifest.version < old.version:
            return (
                f"manifest version {manifest.version} is older than the version "
                f"{old.version} already known; versions must increase on change"
            )
        if (
            old is not None
            and manifest.version == old.version
            and manifest.session == old.session
            and manifest != old
        ):
            return (
                f"manifest changed without a new version (still {manifest.version}); "
                "increase 'version' when the content changes"
            )
        rec.manifest = manifest
        rec.session = manifest.session
        rec.quarantined = None
        rec.last_seen = time.time()
        return None

    def apply_state(self, ref: DeviceRef, state: State) -> bool:
        """Take presence; False when it is ignored (a ``lost`` or ``offline`` for a stale
        session — e.g. the Last Will of a connection the device already replaced)."""
        rec = self.record(ref)
        if state.state != "online" and rec.session is not None and state.session != rec.session:
            return False
        rec.state = state.state
        rec.session = state.session
        rec.last_seen = time.time()
        return True

    def forget(self, ref: DeviceRef) -> None:
        """Drop a device (its manifest was cleared)."""
        self._devices.pop(ref, None)
