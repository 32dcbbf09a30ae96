"""``labctl devices``: what the controller knows of the rig's devices."""

from __future__ import annotations

import json

import click
import httpx
from rich.table import Table
from rich.text import Text

from labctl.cli.common import echo_json, fail, settings
from labctl.cli.render import console, when
from labctl.readings import DeviceRef
from labctl.rig.registry import DeviceRegistry, DeviceView
from labctl.serve.discovery import read_info

STATE_STYLE = {"online": "green", "offline": "yellow", "lost": "red", "quarantined": "bold red"}


def _views() -> list[DeviceView]:
    s = settings()
    info = read_info(s.data_dir)
    if info is None:  # no controller: the registry as it was last written
        return DeviceRegistry(s.data_dir / "registry.sqlite3").all()
    with info.client() as c:
        r = c.get("/api/devices")
        r.raise_for_status()
        return [DeviceView.model_validate(d) for d in r.json()]


@click.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_context
def devices_group(ctx: click.Context, as_json: bool) -> None:
    """List the rig's devices (vendor, model, firmware, state, last seen, channels, rejected)."""
    if ctx.invoked_subcommand is not None:
        return
    views = _views()
    if as_json:
        echo_json(json.dumps([v.model_dump(exclude={"manifest"}) for v in views], indent=2))
        return
    table = Table(title="Devices")
    for col in (
        "device",
        "model",
        "firmware",
        "state",
        "session",
        "last seen (UTC)",
        "channels",
        "rejected",
        "run",
    ):
        table.add_column(col)
    for v in views:
        table.add_row(
            v.key,
            v.model,
            v.firmware,
            Text(v.state, style=STATE_STYLE.get(v.state, "")),
            v.session or "",
            when(v.last_seen),
            ",".join(v.channels),
            str(v.rejected),
            v.reserved_by or "",
        )
    console().print(table)


@devices_group.command("show")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def show(device: str, as_json: bool) -> None:
    """Show VENDOR/DEVICE with its manifest and the last errors sent to the vendor."""
    try:
        key = DeviceRef.parse(device).key
    except ValueError as exc:
        fail(str(exc))
    found = next((v for v in _views() if v.key == key), None)
    if found is None:
        fail(f"no device {key} is known in this data directory")
    if as_json:
        echo_json(found.model_dump_json(indent=2))
        return
    out = console()
    out.print(
        f"[bold]{found.key}[/bold]  {found.model}  firmware {found.firmware}  "
        f"state {found.state}  last seen {when(found.last_seen)} UTC"
    )
    if found.quarantined:
        out.print(f"[red]quarantined:[/red] {found.quarantined}")
    out.print(f"readings {found.readings:,}  rejected messages {found.rejected:,}")
    if found.manifest:
        out.print_json(json.dumps(found.manifest))
    if found.last_errors:
        out.print("[bold]Last errors sent to the vendor[/bold]")
        for e in found.last_errors:
            out.print(f"  • {e}", highlight=False)


@devices_group.command("forget")
@click.argument("device")
def forget(device: str) -> None:
    """Clear VENDOR/DEVICE's retained topics and its registry entry (needs `labctl serve`)."""
    try:
        ref = DeviceRef.parse(device)
    except ValueError as exc:
        fail(str(exc))
    info = read_info(settings().data_dir)
    if info is None:
        fail("forgetting a device needs the running controller: start `labctl serve` first")
    with info.client() as c:
        try:
            r = c.delete(f"/api/devices/{ref.vendor}/{ref.device}")
        except httpx.HTTPError as exc:
            fail(f"cannot reach the controller at {info.url}: {exc}")
    if r.status_code == 404:
        fail(f"no device {ref.key} is known")
    r.raise_for_status()
    console().print(
        f"forgot {ref.key}: retained manifest and state cleared, registry entry removed"
    )
