"""Preflight: which rig devices fill each role of a trial."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from labctl.evaluators.base import Subject
from labctl.protocol.payloads import Manifest
from labctl.readings import DeviceRef
from labctl.rig.directory import DeviceDirectory
from labctl.trial.spec import TrialSpec


@dataclass(frozen=True)
class Selected:
    """A device chosen for a role."""

    slot: str
    """The spec's key under ``devices:`` (e.g. ``candidates``)."""
    role: str
    ref: DeviceRef
    manifest: Manifest
    channel: str

    def subject(self) -> Subject:
        """The evaluator's view of this device."""
        ch = self.manifest.channel(self.channel)
        interval = 1.0 / ch.rate_hz if ch is not None else None
        return Subject(
            key=self.ref.key,
            role=self.role,
            vendor=self.ref.vendor,
            device=self.ref.device,
            model=self.manifest.device.model,
            interval_s=interval,
        )


def select_devices(
    spec: TrialSpec, directory: DeviceDirectory, roles: dict[str, str], default_role: str
) -> tuple[list[Selected], list[str]]:
    """Devices for every role, and the problems (in words) that stop the trial from starting."""
    chosen: list[Selected] = []
    problems: list[str] = []
    taken: set[DeviceRef] = set()
    for slot, sel in spec.devices.items():
        matches = []
        for rec in directory.all():
            if rec.ref in taken or rec.manifest is None or rec.state != "online":
                continue
            if roles.get(rec.ref.key, default_role) != sel.role:
                continue
            if sel.select and not any(fnmatch.fnmatchcase(rec.ref.key, p) for p in sel.select):
                continue
            if rec.manifest.channel(sel.channel) is None:
                continue
            matches.append(Selected(slot, sel.role, rec.ref, rec.manifest, sel.channel))
        if sel.max is not None:
            matches = matches[: sel.max]
        if len(matches) < sel.min:
            problems.append(
                f"'{slot}' needs at least {sel.min} online device(s) with role '{sel.role}' "
                f"offering channel '{sel.channel}'; found {len(matches)}"
            )
        for m in matches:
            taken.add(m.ref)
        chosen.extend(matches)
    return chosen, problems


def describe_directory(directory: DeviceDirectory, roles: dict[str, str], default_role: str) -> str:
    """What the controller sees, for preflight error messages."""
    recs = directory.all()
    if not recs:
        return "no device has published a manifest or state on the bus"
    lines = []
    for r in recs:
        chans = ",".join(c.name for c in r.manifest.channels) if r.manifest else "no manifest"
        q = f" quarantined: {r.quarantined}" if r.quarantined else ""
        lines.append(
            f"  {r.ref.key}: {r.state}, role {roles.get(r.ref.key, default_role)}, "
            f"channels {chans}{q}"
        )
    return "devices seen:\n" + "\n".join(lines)
