"""The lab's PKI: a CA, the broker's server certificate, vendor client certificates, a CRL.

Keys are ECDSA P-256 (fast handshakes, supported by every TLS stack a device is likely to
carry). Private keys are written 0600. A vendor certificate's CN is the vendor's name: the
mutual-TLS listener uses it as the MQTT username (``use_identity_as_username``), so the ACL
keys on it exactly as it keys on a password user.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labctl.security.files import SECRET_MODE, write_atomic

CA_DAYS = 3650
SERVER_DAYS = 825


class PkiError(RuntimeError):
    """The lab CA or a certificate cannot be used; ``str()`` says why."""


@dataclass(frozen=True)
class CertPaths:
    """Where a certificate, its private key and the CA that signed it are."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class IssuedCert:
    """A freshly issued certificate."""

    paths: CertPaths
    serial: int
    not_after: dt.datetime


@dataclass(frozen=True)
class LabCA:
    """The lab CA's certificate and key, loaded from its directory."""

    directory: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_path(self) -> Path:
        """The CA certificate (PEM), what clients and the broker trust."""
        return self.directory / "ca.crt"


def ensure_ca(directory: Path, common_name: str | None = None) -> LabCA:
    """Load the CA in ``directory``, creating it on first use (its CN gets a random suffix,
    so two labs' CAs never share an issuer name)."""
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() != key_path.exists():
        raise PkiError(f"{directory} holds only half of a CA (ca.crt and ca.key go together)")
    if cert_path.exists():
        return load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    cn = common_name or f"labctl lab CA {secrets.token_hex(4)}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return LabCA(directory, cert, key)


def load_ca(directory: Path) -> LabCA:
    """The CA stored in ``directory`` (``ca.crt``, ``ca.key``)."""
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot load the lab CA from {directory}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"the lab CA key in {directory} is not an EC key")
    return LabCA(directory, cert, key)


def issue_server_cert(ca: LabCA, names: Sequence[str], directory: Path) -> IssuedCert:
    """A broker certificate for ``names`` (DNS names and IP addresses), written to
    ``directory/server.crt`` and ``server.key``."""
    if not names:
        raise PkiError("the server certificate needs at least one host name or address")
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    return _issue(
        ca,
        common_name=names[0],
        days=SERVER_DAYS,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
        paths=CertPaths(directory / "server.crt", directory / "server.key", ca.cert_path),
    )


def issue_client_cert(ca: LabCA, vendor: str, directory: Path, days: int) -> IssuedCert:
    """A client certificate with CN ``vendor``, written to ``directory/{vendor}.crt``,
    ``{vendor}.key`` and a copy of the CA certificate ``ca.crt`` (the bundle a vendor needs)."""
    paths = CertPaths(
        directory / f"{vendor}.crt", directory / f"{vendor}.key", directory / "ca.crt"
    )
    issued = _issue(
        ca,
        common_name=vendor,
        days=days,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        sans=[],
        paths=paths,
    )
    write_atomic(paths.ca, ca.cert.public_bytes(serialization.Encoding.PEM))
    return issued


def write_crl(ca: LabCA, revoked: Iterable[tuple[int, dt.datetime]], path: Path) -> None:
    """A CRL listing ``(serial, revoked_at)``. Mosquitto rejects every client certificate
    once a CRL's next update has passed, so it is rewritten on every configuration write and
    valid for as long as the CA."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(ca.cert.not_valid_after_utc)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))


def _issue(
    ca: LabCA,
    *,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    paths: CertPaths,
) -> IssuedCert:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    serial = x509.random_serial_number()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    _write_key(paths.key, key)
    write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    return IssuedCert(paths, serial, not_after)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, SECRET_MODE)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
