"""Mosquitto ACL files rendered from the vendor registry.

Rules are keyed on the authenticated username only: the password user, or the certificate
CN on the mutual-TLS listener (``use_identity_as_username``). Client ids never appear, so a
client id shaped like another vendor's device grants nothing.

Each active vendor gets its own ``user`` block with its name written out, rather than one
``pattern … %u …`` block for everyone: a username the registry does not list as active (a
revoked vendor whose certificate is still accepted until the CRL reloads, a stray password
line) then matches no rule at all, and mosquitto denies by default. The effect for a listed
vendor is exactly that of the ``%u`` patterns.
"""

from __future__ import annotations

from collections.abc import Iterable

from labctl.protocol.topics import ROOT, is_valid_name

DEVICE_WRITES = (
    "{root}/{v}/+/manifest",
    "{root}/{v}/+/state",
    "{root}/{v}/+/telemetry/+",
    "{root}/{v}/+/events/+",
    "{root}/{v}/+/cmd/+/res",
)
"""Device-side topics a vendor may publish (its own devices only)."""

DEVICE_READS = (
    "{root}/{v}/+/cmd/+/req",
    "{root}/{v}/+/stim/+",
    "{root}/_err/{v}/#",
    "{root}/_ctl/+/state",
)
"""What a vendor may receive: its own command requests and stimulus frames, the lab's
explanations of its rejected messages, and controller presence."""


def vendor_acl(vendors: Iterable[str]) -> str:
    """The ACL of the vendor listeners: one block per active vendor, nothing else."""
    lines = [
        "# Written by labctl (labctl vendor add|revoke): do not edit, it is regenerated.",
        "# Vendors may write only their own device-side topics and read only their own",
        "# command requests and _err explanations, plus controller presence.",
        "",
    ]
    for v in sorted(set(vendors)):
        if not is_valid_name(v):
            raise ValueError(f"invalid vendor name in the ACL: {v!r}")
        lines.append(f"user {v}")
        lines += [f"topic write {t.format(root=ROOT, v=v)}" for t in DEVICE_WRITES]
        lines += [f"topic read {t.format(root=ROOT, v=v)}" for t in DEVICE_READS]
        lines.append("")
    return "\n".join(lines) + "\n"


def controller_acl(username: str) -> str:
    """The ACL of the local listener: the controller reads and writes everything."""
    if not username or any(c in username for c in " \n\t+#/"):
        raise ValueError(f"invalid controller username: {username!r}")
    return "\n".join(
        [
            "# Written by labctl: the controller's full access on the local listener.",
            f"user {username}",
            "topic readwrite #",
            "",
        ]
    )
