"""The vendor registry: who may connect to the lab broker, and how.

A JSON file (0600) in the lab broker's state directory. It holds names, kinds, dates,
password *hashes* (the ``$7$`` lines of mosquitto's password file, never a plaintext) and
certificate serials (for the CRL). Revoked vendors stay in the file, marked, so their
certificate serials stay on the CRL; a revoked name can be added again with new credentials.
Every change happens under an exclusive lock, so two ``labctl vendor`` commands at once
cannot lose one another's update.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.protocol.topics import is_valid_name
from labctl.security.files import SECRET_MODE, write_atomic

VendorKind = Literal["password", "certificate"]


class VendorError(Exception):
    """A vendor operation that cannot be done; ``str()`` is the message for the user."""


class VendorRecord(BaseModel):
    """One issued vendor identity."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: VendorKind
    created: dt.datetime
    revoked: dt.datetime | None = None
    password_hash: str | None = None
    """mosquitto ``$7$`` hash, for ``kind == "password"``."""
    cert_serial: int | None = None
    cert_not_after: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked is None


class ControllerIdentity(BaseModel):
    """The controller's identity on the local listener (hash only)."""

    model_config = ConfigDict(extra="forbid")

    username: str
    password_hash: str


class RegistryData(BaseModel):
    """Everything the registry file holds."""

    model_config = ConfigDict(extra="forbid")

    config_dir: Path | None = None
    """Where the broker configuration was last written; ``vendor add|revoke`` rewrite it."""
    controller: ControllerIdentity | None = None
    vendors: list[VendorRecord] = Field(default_factory=list)

    def active(self, name: str) -> VendorRecord | None:
        """The active record of ``name``, if any."""
        return next((v for v in self.vendors if v.name == name and v.active), None)

    def active_vendors(self) -> list[VendorRecord]:
        """Active vendors, by name."""
        return sorted((v for v in self.vendors if v.active), key=lambda v: v.name)


def check_vendor_name(name: str) -> str:
    """``name`` if it can be a vendor name on the wire, else a :class:`VendorError`."""
    if name.startswith("_"):
        raise VendorError(f"vendor name {name!r}: names starting with '_' are reserved for the lab")
    if not is_valid_name(name):
        raise VendorError(
            f"vendor name {name!r}: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return name


class VendorRegistry:
    """The registry file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> RegistryData:
        """The current contents (empty if the file does not exist yet)."""
        if not self.path.exists():
            return RegistryData()
        try:
            return RegistryData.model_validate_json(self.path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise VendorError(f"cannot read the vendor registry {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def update(self) -> Iterator[RegistryData]:
        """Read, let the caller change, write back atomically; all under an exclusive lock.
        Nothing is written if the block raises."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data = self.read()
            yield data
            write_atomic(self.path, data.model_dump_json(indent=2) + "\n", SECRET_MODE)
