"""``labctl vendor``: issue, list and revoke vendors' broker identities."""

from __future__ import annotations

import json

import click
from rich.table import Table

from labctl.cli.broker_cmd import LAB_ERRORS, lab_broker, report_written
from labctl.cli.common import echo_json, fail, settings
from labctl.cli.render import console


@click.group("vendor")
def vendor_group() -> None:
    """Vendors: their identities on the lab broker (add, list, revoke) and device checks."""


@vendor_group.command("add")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["password", "certificate"]),
    default="password",
    show_default=True,
    help="A password (used over TLS) or a client certificate signed by the lab CA.",
)
def add(name: str, kind: str) -> None:
    """Issue NAME's broker identity and rewrite the broker's access rules.

    The password is shown once (labctl keeps only its hash); a certificate bundle is
    written for handover and its paths are printed.
    """
    s = settings()
    try:
        new, written = lab_broker(s).add_vendor(
            name, "certificate" if kind == "certificate" else "password"
        )
    except LAB_ERRORS as exc:
        fail(str(exc))
    lb, out = s.lab_broker, console()
    out.print(f"vendor {name} added ({kind})", highlight=False)
    if new.password is not None:
        out.print(
            f"  username: {name}\n  password: {new.password}\n"
            "  (shown only now: hand it to the vendor; labctl keeps only its hash)\n"
            f"  connect with TLS to port {lb.vendor_password_port}, trusting {written.layout.ca}",
            highlight=False,
            markup=False,
        )
    if new.cert is not None:
        out.print(
            f"  certificate: {new.cert.cert}\n  private key: {new.cert.key}\n"
            f"  lab CA:      {new.cert.ca}\n"
            "  (hand these three files to the vendor; the key is deleted on revoke)\n"
            f"  connect with mutual TLS to port {lb.vendor_cert_port}",
            highlight=False,
            markup=False,
        )
    report_written(written)


@vendor_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked identities.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def list_vendors(include_revoked: bool, as_json: bool) -> None:
    """List vendors (no secrets)."""
    try:
        records = lab_broker(settings()).vendors(include_revoked)
    except LAB_ERRORS as exc:
        fail(str(exc))
    if as_json:
        rows = [r.model_dump(mode="json", exclude={"password_hash"}) for r in records]
        echo_json(json.dumps(rows, indent=2))
        return
    table = Table("vendor", "kind", "created (UTC)", "certificate until", "revoked (UTC)")
    for r in records:
        table.add_row(
            r.name,
            r.kind,
            f"{r.created:%Y-%m-%d %H:%M}",
            f"{r.cert_not_after:%Y-%m-%d}" if r.cert_not_after else "—",
            f"{r.revoked:%Y-%m-%d %H:%M}" if r.revoked else "—",
        )
    console().print(table)


@vendor_group.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke NAME: remove its password, put its certificate on the CRL, drop its rules."""
    try:
        record, written = lab_broker(settings()).revoke_vendor(name)
    except LAB_ERRORS as exc:
        fail(str(exc))
    console().print(f"vendor {name} revoked ({record.kind})", highlight=False)
    report_written(written)
