"""The lab broker as a whole: issue and revoke vendor identities, write the configuration.

State (registry, CA key, issued bundles) lives in a state directory that never goes to the
broker; the configuration directory gets only what mosquitto reads: the config, password
files with hashes, ACLs, the CA certificate, the server certificate and key, and the CRL.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from labctl.bus.broker import BrokerLimits
from labctl.security import acl, pki
from labctl.security.files import SECRET_MODE, write_atomic
from labctl.security.mosquitto_conf import BrokerLayout, render_lab_config
from labctl.security.passwords import (
    generate_password,
    hash_password,
    render_password_file,
    verify_password,
)
from labctl.security.settings import LabBrokerSettings
from labctl.security.vendors import (
    ControllerIdentity,
    RegistryData,
    VendorError,
    VendorKind,
    VendorRecord,
    VendorRegistry,
    check_vendor_name,
)

RENEW_SERVER_CERT_BEFORE = dt.timedelta(days=30)


class ReloadError(RuntimeError):
    """The broker could not be signalled; ``str()`` says why."""


@dataclass(frozen=True)
class NewVendor:
    """What ``vendor add`` hands over, once: the password, or the certificate bundle."""

    record: VendorRecord
    password: str | None = None
    cert: pki.CertPaths | None = None


@dataclass(frozen=True)
class WrittenConfig:
    """A configuration written to disk."""

    layout: BrokerLayout
    controller_username: str
    new_controller_password: str | None
    """Set only when labctl generated the controller's password just now (shown once)."""
    running_pid: int | None
    """A broker already running with this configuration: it must reload to see changes."""


class LabBroker:
    """Vendor identities and the broker configuration of one lab.

    ``controller_username``/``controller_password`` come from the controller's own broker
    settings (``broker.username``/``broker.password``); without a password, labctl generates
    one the first time and keeps only its hash.
    """

    def __init__(
        self,
        state_dir: Path,
        settings: LabBrokerSettings,
        *,
        limits: BrokerLimits | None = None,
        controller_username: str | None = None,
        controller_password: str | None = None,
        run_as: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.settings = settings
        self.limits = limits or BrokerLimits()
        self.controller_username = controller_username or settings.controller_username
        self.controller_password = controller_password
        self.run_as = run_as
        self.registry = VendorRegistry(state_dir / "vendors.json")

    @property
    def default_config_dir(self) -> Path:
        """Where the configuration goes unless told otherwise."""
        return self.settings.config_dir or self.state_dir / "mosquitto"

    def issued_dir(self, name: str) -> Path:
        """Where a certificate vendor's bundle (cert, key, CA) is written for handover."""
        return self.state_dir / "issued" / name

    def vendors(self, include_revoked: bool = False) -> list[VendorRecord]:
        """Vendors by name (and date), active ones only unless ``include_revoked``."""
        records = self.registry.read().vendors
        chosen = records if include_revoked else [v for v in records if v.active]
        return sorted(chosen, key=lambda v: (v.name, v.created))

    def add_vendor(self, name: str, kind: VendorKind) -> tuple[NewVendor, WrittenConfig]:
        """Issue an identity for ``name`` and rewrite the broker's password file and ACL."""
        check_vendor_name(name)
        now = dt.datetime.now(dt.UTC)
        with self.registry.update() as data:
            if data.active(name) is not None:
                raise VendorError(
                    f"vendor {name!r} exists; revoke it first to issue new credentials"
                )
            if kind == "password":
                password = generate_password()
                record = VendorRecord(
                    name=name, kind=kind, created=now, password_hash=hash_password(password)
                )
                new = NewVendor(record, password=password)
            else:
                ca = pki.ensure_ca(self.state_dir / "ca")
                issued = pki.issue_client_cert(
                    ca, name, self.issued_dir(name), self.settings.cert_days
                )
                record = VendorRecord(
                    name=name,
                    kind=kind,
                    created=now,
                    cert_serial=issued.serial,
                    cert_not_after=issued.not_after,
                )
                new = NewVendor(record, cert=issued.paths)
            data.vendors.append(record)
            written = self._write(data, None)
        return new, written

    def revoke_vendor(self, name: str) -> tuple[VendorRecord, WrittenConfig]:
        """Revoke ``name``: off the password file and ACL, its certificate on the CRL."""
        with self.registry.update() as data:
            record = data.active(name)
            if record is None:
                known = ", ".join(v.name for v in data.active_vendors()) or "none"
                raise VendorError(f"unknown vendor {name!r} (active vendors: {known})")
            record.revoked = dt.datetime.now(dt.UTC)
            written = self._write(data, None)
        shutil.rmtree(self.issued_dir(name), ignore_errors=True)  # the key is worthless now
        return record, written

    def write_config(self, out: Path | None = None) -> WrittenConfig:
        """Write the complete configuration to ``out`` (default: where it was last written)."""
        with self.registry.update() as data:
            return self._write(data, out)

    def _write(self, data: RegistryData, out: Path | None) -> WrittenConfig:
        layout = BrokerLayout((out or data.config_dir or self.default_config_dir).absolute())
        new_password = self._controller_identity(data)
        assert data.controller is not None
        ca = pki.ensure_ca(self.state_dir / "ca")
        self._write_tls(ca, layout, data)
        active = data.active_vendors()
        write_atomic(
            layout.passwd_local,
            render_password_file({data.controller.username: data.controller.password_hash}),
            SECRET_MODE,
        )
        write_atomic(
            layout.passwd_vendors,
            render_password_file(
                {v.name: v.password_hash for v in active if v.password_hash is not None}
            ),
            SECRET_MODE,
        )
        write_atomic(layout.acl_local, acl.controller_acl(data.controller.username))
        write_atomic(layout.acl_vendors, acl.vendor_acl(v.name for v in active))
        layout.persistence.mkdir(parents=True, exist_ok=True)
        write_atomic(
            layout.conf,
            render_lab_config(layout, self.settings, self.limits, run_as=self.run_as),
        )
        data.config_dir = layout.directory
        return WrittenConfig(
            layout=layout,
            controller_username=data.controller.username,
            new_controller_password=new_password,
            running_pid=running_broker_pid(layout),
        )

    def _controller_identity(self, data: RegistryData) -> str | None:
        """Make sure the registry holds the controller's hash; the new password, if any."""
        current = data.controller
        if self.controller_password is not None:
            if (
                current is None
                or current.username != self.controller_username
                or not verify_password(self.controller_password, current.password_hash)
            ):
                data.controller = ControllerIdentity(
                    username=self.controller_username,
                    password_hash=hash_password(self.controller_password),
                )
            return None
        if current is not None and current.username == self.controller_username:
            return None
        password = generate_password()
        data.controller = ControllerIdentity(
            username=self.controller_username, password_hash=hash_password(password)
        )
        return password

    def _write_tls(self, ca: pki.LabCA, layout: BrokerLayout, data: RegistryData) -> None:
        server = layout.tls_dir / "server.crt"
        if _needs_new_server_cert(server, ca, self.settings.server_names):
            pki.issue_server_cert(ca, self.settings.server_names, layout.tls_dir)
        write_atomic(layout.ca, ca.cert.public_bytes(serialization.Encoding.PEM))
        revoked = [
            (v.cert_serial, v.revoked)
            for v in data.vendors
            if v.cert_serial is not None and v.revoked is not None
        ]
        pki.write_crl(ca, revoked, layout.crl)


def _needs_new_server_cert(path: Path, ca: pki.LabCA, names: list[str]) -> bool:
    if not path.exists() or not path.with_suffix(".key").exists():
        return True
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.issuer != ca.cert.subject:
        return True
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_SERVER_CERT_BEFORE:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(n.value) for n in san}
    return have != set(names)


def running_broker_pid(layout: BrokerLayout) -> int | None:
    """The pid of a mosquitto running with ``layout``'s configuration, if one is running."""
    try:
        pid = int(layout.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not cmdline or not cmdline[0].endswith(b"mosquitto"):
        return None  # a stale pid file whose pid now belongs to something else
    return pid


def reload(pid: int) -> None:
    """Ask the broker ``pid`` to reread its configuration, password files, ACLs,
    certificates and CRL (SIGHUP). Measured with mosquitto 2.0.11: a connected client whose
    password was removed is disconnected; a connected certificate client stays connected
    (the CRL is checked at the handshake) but its ACL block is gone, so it can do nothing."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise ReloadError(f"no broker runs with pid {pid}") from exc
    except PermissionError as exc:
        raise ReloadError(f"not allowed to signal the broker (pid {pid}); run as its user") from exc
