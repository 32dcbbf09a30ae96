"""Vendor identities, password hashes, PKI, ACL and mosquitto.conf rendering (no broker)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labctl.bus.broker import BrokerLimits
from labctl.cli.main import cli
from labctl.security import acl, pki
from labctl.security.lab import LabBroker
from labctl.security.mosquitto_conf import BrokerLayout, ConfigDirError, render_lab_config
from labctl.security.passwords import (
    PasswordFormatError,
    generate_password,
    hash_password,
    render_password_file,
    verify_password,
)
from labctl.security.settings import LabBrokerSettings
from labctl.security.vendors import VendorError, check_vendor_name


def lab(tmp_path: Path, password: str | None = None) -> LabBroker:
    return LabBroker(
        tmp_path / "state",
        LabBrokerSettings(config_dir=tmp_path / "conf"),
        controller_password=password,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- passwords -------------------------------------------------------------------------


def test_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.fail("mosquitto_passwd is missing (scripts/test installs mosquitto)")
    pwfile = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(pwfile), "u1", "s3cret:é"], check=True)
    theirs = pwfile.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert verify_password("s3cret:é", theirs)
    assert not verify_password("s3cret", theirs)
    import base64

    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("s3cret:é", salt=salt) == theirs


def test_password_helpers() -> None:
    pws = {generate_password() for _ in range(100)}
    assert len(pws) == 100
    assert all(len(p) >= 32 and ":" not in p for p in pws)
    h = hash_password("x")
    assert h != hash_password("x")  # salted
    assert verify_password("x", h)
    with pytest.raises(PasswordFormatError):
        verify_password("x", "$6$abc$def")
    assert render_password_file({"b": "$7$h2", "a": "$7$h1"}) == "a:$7$h1\nb:$7$h2\n"
    with pytest.raises(ValueError, match="cannot appear"):
        render_password_file({"a:b": "h"})


# --- names and ACL ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acme", "a", "city-lights-2", "0x"])
def test_valid_vendor_names(name: str) -> None:
    assert check_vendor_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("_lab", "reserved"),
        ("Acme", "lowercase"),
        ("a/b", "lowercase"),
        ("a+", "lowercase"),
        ("a#", "lowercase"),
        ("", "lowercase"),
        ("-a", "lowercase"),
        ("a" * 64, "lowercase"),
        ("a b", "lowercase"),
    ],
)
def test_invalid_vendor_names(name: str, why: str) -> None:
    with pytest.raises(VendorError, match=why):
        check_vendor_name(name)


def test_vendor_acl_names_each_vendor_and_never_the_client_id() -> None:
    text = acl.vendor_acl(["bolt", "acme"])
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rules[:10] == [
        "user acme",
        "topic write lab/v1/acme/+/manifest",
        "topic write lab/v1/acme/+/state",
        "topic write lab/v1/acme/+/telemetry/+",
        "topic write lab/v1/acme/+/events/+",
        "topic write lab/v1/acme/+/cmd/+/res",
        "topic read lab/v1/acme/+/cmd/+/req",
        "topic read lab/v1/acme/+/stim/+",
        "topic read lab/v1/_err/acme/#",
        "topic read lab/v1/_ctl/+/state",
    ]
    assert rules[10] == "user bolt"
    assert "%c" not in text
    assert not any(r.startswith("pattern") or "readwrite" in r for r in rules)
    with pytest.raises(ValueError, match="invalid vendor"):
        acl.vendor_acl(["a/#"])
    assert acl.controller_acl("_labctl").splitlines()[1:] == ["user _labctl", "topic readwrite #"]


# --- configuration ---------------------------------------------------------------------


def test_mosquitto_conf_has_explicit_listeners_and_limits(tmp_path: Path) -> None:
    layout = BrokerLayout(tmp_path)
    settings = LabBrokerSettings(local_port=1, vendor_password_port=2, vendor_cert_port=3)
    text = render_lab_config(layout, settings, BrokerLimits(max_queued_messages=1234))
    lines = text.splitlines()
    assert "per_listener_settings true" in lines
    assert [ln for ln in lines if ln.startswith("listener")] == [
        "listener 1 127.0.0.1",
        "listener 2 0.0.0.0",
        "listener 3 0.0.0.0",
    ]
    assert lines.count("allow_anonymous false") == 3
    assert "allow_anonymous true" not in text
    assert lines.count(f"acl_file {layout.acl_vendors}") == 2
    assert f"password_file {layout.passwd_local}" in lines
    assert f"crlfile {layout.crl}" in lines
    assert "use_identity_as_username true" in lines
    assert "require_certificate true" in lines
    assert "max_queued_messages 1234" in lines
    assert "message_size_limit 1048576" in lines
    assert "user " not in text.replace("use_identity", "")
    assert "user mosquitto" in render_lab_config(
        layout, settings, BrokerLimits(), run_as="mosquitto"
    )
    with pytest.raises(ConfigDirError, match="spaces"):
        BrokerLayout(tmp_path / "my lab")


# --- identities ------------------------------------------------------------------------


def test_add_list_revoke_and_the_files_they_write(tmp_path: Path) -> None:
    lb = lab(tmp_path)
    new, written = lb.add_vendor("acme", "password")
    assert new.password is not None and written.new_controller_password is not None
    cert_vendor, _ = lb.add_vendor("bolt", "certificate")
    assert cert_vendor.cert is not None
    layout = written.layout

    with pytest.raises(VendorError, match="exists"):
        lb.add_vendor("acme", "certificate")
    with pytest.raises(VendorError, match="unknown vendor 'nope'"):
        lb.revoke_vendor("nope")
    assert [v.name for v in lb.vendors()] == ["acme", "bolt"]

    # Hashes only: no plaintext anywhere labctl wrote.
    for f in (tmp_path / "state").rglob("*"):
        if f.is_file():
            assert new.password.encode() not in f.read_bytes()
            assert written.new_controller_password.encode() not in f.read_bytes()
    for f in layout.directory.rglob("*"):
        if f.is_file():
            assert new.password.encode() not in f.read_bytes()
    assert layout.passwd_vendors.read_text().startswith("acme:$7$")
    assert layout.passwd_local.read_text().startswith("_labctl:$7$")
    for secret in (
        layout.passwd_local,
        layout.passwd_vendors,
        layout.tls_dir / "server.key",
        cert_vendor.cert.key,
        tmp_path / "state" / "ca" / "ca.key",
        tmp_path / "state" / "vendors.json",
    ):
        assert mode(secret) == 0o600, secret
    assert not (layout.directory / "ca.key").exists()
    assert not list(layout.directory.rglob("ca.key")), "the CA key never goes to the broker"

    # The issued certificate: CN = vendor, client auth, signed by the lab CA.
    cert = x509.load_pem_x509_certificate(cert_vendor.cert.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(layout.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bolt"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    server = x509.load_pem_x509_certificate((layout.tls_dir / "server.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in sans} == {"localhost", "127.0.0.1"}

    # Revoke: gone from the password file and ACL, serial on the CRL, bundle deleted.
    lb.revoke_vendor("acme")
    lb.revoke_vendor("bolt")
    assert layout.passwd_vendors.read_text() == ""
    assert "user" not in acl.vendor_acl([]) and "user acme" not in layout.acl_vendors.read_text()
    crl = x509.load_pem_x509_crl(layout.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert not cert_vendor.cert.key.exists()
    assert lb.vendors() == []
    assert [v.name for v in lb.vendors(include_revoked=True)] == ["acme", "bolt"]

    # A revoked name can be issued again; the old serial stays revoked.
    again, _ = lb.add_vendor("bolt", "certificate")
    assert again.record.cert_serial != cert.serial_number
    crl = x509.load_pem_x509_crl(layout.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(again.record.cert_serial or 0) is None


def test_controller_password_is_generated_once_or_taken_from_settings(tmp_path: Path) -> None:
    first = lab(tmp_path).write_config()
    assert first.new_controller_password is not None
    again = lab(tmp_path).write_config()
    assert again.new_controller_password is None
    local = again.layout.passwd_local.read_text()
    assert verify_password(first.new_controller_password, local.strip().split(":", 1)[1])
    configured = lab(tmp_path, password="from-settings").write_config()
    hashed = configured.layout.passwd_local.read_text().strip().split(":", 1)[1]
    assert verify_password("from-settings", hashed)
    assert configured.running_pid is None


def test_server_certificate_is_kept_until_names_change(tmp_path: Path) -> None:
    lb = lab(tmp_path)
    layout = lb.write_config().layout
    before = (layout.tls_dir / "server.crt").read_bytes()
    lb.write_config()
    assert (layout.tls_dir / "server.crt").read_bytes() == before
    lb.settings = lb.settings.model_copy(update={"server_names": ["lab.example", "10.0.0.5"]})
    lb.write_config()
    assert (layout.tls_dir / "server.crt").read_bytes() != before


def test_foreign_ca_is_a_different_trust_root(tmp_path: Path) -> None:
    ours = pki.ensure_ca(tmp_path / "a")
    theirs = pki.ensure_ca(tmp_path / "b")
    issued = pki.issue_client_cert(theirs, "acme", tmp_path / "x", 1)
    cert = x509.load_pem_x509_certificate(issued.paths.cert.read_bytes())
    assert cert.issuer != ours.cert.subject
    with pytest.raises((ValueError, InvalidSignature)):
        cert.verify_directly_issued_by(ours.cert)
    assert pki.ensure_ca(tmp_path / "a").cert == ours.cert  # loaded, not recreated
    (tmp_path / "a" / "ca.key").unlink()
    with pytest.raises(pki.PkiError, match="half of a CA"):
        pki.ensure_ca(tmp_path / "a")


# --- CLI -------------------------------------------------------------------------------


def test_cli_vendor_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABCTL_CONFIG", raising=False)
    monkeypatch.setenv("LABCTL_DATA_DIR", str(tmp_path / "data"))
    run = CliRunner().invoke

    res = run(cli, ["broker", "config", "--out", str(tmp_path / "conf")])
    assert res.exit_code == 0, res.output
    assert "mode: external" in res.output and "username: _labctl" in res.output
    res = run(cli, ["vendor", "add", "acme"])
    assert res.exit_code == 0, res.output
    password = next(ln.split(": ", 1)[1] for ln in res.output.splitlines() if "password:" in ln)
    assert len(password) >= 32
    assert f"written to {tmp_path / 'conf'}" in res.output  # the directory used last time
    res = run(cli, ["vendor", "add", "bolt", "--kind", "certificate"])
    assert res.exit_code == 0 and "bolt.key" in res.output, res.output

    listing = run(cli, ["vendor", "list"])
    as_json = run(cli, ["vendor", "list", "--json"])
    for out in (listing.output, as_json.output):
        assert "acme" in out and password not in out and "$7$" not in out
    assert [v["name"] for v in json.loads(as_json.output)] == ["acme", "bolt"]

    for args, message in [
        (["vendor", "add", "acme"], "exists"),
        (["vendor", "add", "_lab"], "reserved"),
        (["vendor", "add", "Bad/Name"], "lowercase"),
        (["vendor", "revoke", "nope"], "unknown vendor"),
        (["broker", "reload"], "no broker runs"),
    ]:
        res = run(cli, args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)

    res = run(cli, ["vendor", "revoke", "acme"])
    assert res.exit_code == 0 and "revoked" in res.output
    assert [v["name"] for v in json.loads(run(cli, ["vendor", "list", "--json"]).output)] == [
        "bolt"
    ]
