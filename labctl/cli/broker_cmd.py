"""``labctl broker``: write the lab broker's Mosquitto configuration, reload it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from labctl.cli.common import fail, settings
from labctl.cli.render import console
from labctl.config import Settings
from labctl.security.lab import (
    LabBroker,
    ReloadError,
    WrittenConfig,
    reload,
    running_broker_pid,
)
from labctl.security.mosquitto_conf import BrokerLayout, ConfigDirError
from labctl.security.pki import PkiError
from labctl.security.vendors import VendorError

LAB_ERRORS = (VendorError, PkiError, ConfigDirError, ReloadError, OSError)


def lab_broker(s: Settings, run_as: str | None = None) -> LabBroker:
    """The lab broker of these settings (state in ``{data_dir}/lab-broker``)."""
    password = s.broker.password.get_secret_value() if s.broker.password else None
    if run_as is None and os.geteuid() == 0:
        # Started as root, mosquitto switches to the 'mosquitto' user, which cannot read
        # the 0600 keys and password files labctl wrote as root.
        run_as = "root"
    return LabBroker(
        s.data_dir / "lab-broker",
        s.lab_broker,
        controller_username=s.broker.username,
        controller_password=password,
        run_as=run_as or None,
    )


def report_written(written: WrittenConfig) -> None:
    """Say where the configuration is and whether a running broker must reload."""
    out = console()
    out.print(f"broker configuration written to {written.layout.directory}", highlight=False)
    if written.running_pid is not None:
        out.print(
            f"a broker runs with it (pid {written.running_pid}): apply the change with "
            "'labctl broker reload'",
            highlight=False,
        )


@click.group("broker")
def broker_group() -> None:
    """The lab's Mosquitto broker: configuration and reload."""


@broker_group.command("config")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for mosquitto.conf, ACLs, password files and TLS files "
    "(default: where it was last written, else lab_broker.config_dir).",
)
@click.option(
    "--run-as",
    help="The 'user' mosquitto switches to when started as root; it must be able to read "
    "the files (default: root when labctl runs as root; '' for none).",
)
def config(out: Path | None, run_as: str | None) -> None:
    """Write the complete lab broker configuration (start it with mosquitto -c FILE)."""
    s = settings()
    try:
        written = lab_broker(s, run_as).write_config(out)
    except LAB_ERRORS as exc:
        fail(str(exc))
    report_written(written)
    lb = s.lab_broker
    out_ = console()
    out_.print(
        f"start it with: mosquitto -c {written.layout.conf}\n"
        f"  controller (local):    {lb.local_bind}:{lb.local_port}\n"
        f"  vendors, password+TLS: {lb.vendor_bind}:{lb.vendor_password_port}\n"
        f"  vendors, mutual TLS:   {lb.vendor_bind}:{lb.vendor_cert_port}\n"
        f"  vendors trust:         {written.layout.ca}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if written.new_controller_password is not None:
        password = written.new_controller_password
        note = "# the controller's password is shown only now; labctl keeps its hash"
    elif s.broker.password is not None:
        password, note = "<as configured>", "# the controller's configured password is in use"
    else:
        password = "<shown when it was generated>"  # noqa: S105 - a placeholder
        note = "# lost it? set broker.password in labctl.yaml and run this command again"
    host = "127.0.0.1" if lb.local_bind in ("0.0.0.0", "::") else lb.local_bind  # noqa: S104
    out_.print(
        "\nput this in labctl.yaml so the controller connects to it:\n"
        f"{note}\n"
        "broker:\n"
        "  mode: external\n"
        f"  host: {host}\n"
        f"  port: {lb.local_port}\n"
        f"  username: {written.controller_username}\n"
        f"  password: {password}",
        highlight=False,
        markup=False,
    )


@broker_group.command("reload")
def reload_cmd() -> None:
    """Make the running lab broker reread its password files, ACLs, certificates and CRL."""
    lab = lab_broker(settings())
    try:
        directory = lab.registry.read().config_dir or lab.default_config_dir
        layout = BrokerLayout(directory)
        pid = running_broker_pid(layout)
        if pid is None:
            fail(f"no broker runs with the configuration in {directory} (no live pid file)")
        reload(pid)
    except LAB_ERRORS as exc:
        fail(str(exc))
    console().print(f"broker pid {pid} reloads its configuration", highlight=False)
