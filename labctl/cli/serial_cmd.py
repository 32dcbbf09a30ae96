"""``labctl serial``: find serial ports and watch what a device says on one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import orjson
import yaml

from labctl.cli.common import echo_json, fail
from labctl.cli.exit_codes import ExitCode
from labctl.plugins import PluginError
from labctl.serial_driver import DecodeResult
from labctl.serialio.port import PortError
from labctl.serialio.scan import scan
from labctl.serialio.sniff import make_driver, sniff


@click.group("serial")
def serial_group() -> None:
    """Serial devices: list ports, sniff frames."""


@serial_group.command("scan")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def scan_cmd(as_json: bool) -> None:
    """List candidate serial ports with their stable by-id names and USB vid:pid."""
    ports = scan()
    if as_json:
        echo_json(orjson.dumps([p.as_dict() for p in ports]).decode())
        return
    if not ports:
        click.echo("no serial ports found (is the adapter plugged in?)")
        return
    for p in ports:
        ident = " ".join(x for x in (p.vid_pid, p.manufacturer, p.description) if x)
        click.echo(f"{p.device}  {ident}".rstrip())
        for name in p.by_id:
            click.echo(f"    {name}")


def _option(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE")
    return key, yaml.safe_load(value)


@serial_group.command("sniff")
@click.argument("port")
@click.option("--driver", "driver_name", required=True, help="pms5003, sds011, line, …")
@click.option("--baud", type=click.IntRange(min=1), default=None, help="Default: the driver's.")
@click.option("-o", "--option", "options", multiple=True, help="Driver option KEY=VALUE.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decoded frame.")
@click.option("--poll", is_flag=True, help="Send the driver's setup and poll commands too.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this long.",
)
def sniff_cmd(
    port: str,
    driver_name: str,
    baud: int | None,
    options: tuple[str, ...],
    as_json: bool,
    poll: bool,
    count: int | None,
    seconds: float | None,
) -> None:
    """Print the frames a device sends on PORT, decoded, with a hex dump of discarded bytes.

    Listens only, unless --poll. Stops with Ctrl-C, --count or --seconds.
    """
    try:
        driver = make_driver(driver_name, dict(_option(o) for o in options))
    except (PluginError, ValueError) as exc:
        fail(str(exc))

    def show(result: DecodeResult) -> None:
        now = time.time()
        for f in result.frames:
            if as_json:
                obj = {"ts": now, "kind": f.kind, "fields": dict(f.fields), "raw": f.raw.hex()}
                click.echo(orjson.dumps(obj).decode())
            else:
                fields = " ".join(f"{k}={v}" for k, v in f.fields.items())
                click.echo(f"{time.strftime('%H:%M:%S')} {f.kind:<5} {fields}")
        for d in result.discards:
            click.echo(
                f"discarded {len(d.data)} byte(s) ({d.reason}): {d.data.hex(' ')}", err=as_json
            )

    try:
        asyncio.run(sniff(port, driver, baud, show, poll=poll, max_frames=count, seconds=seconds))
    except PortError as exc:
        fail(str(exc), ExitCode.RIG_FAULT)
    except KeyboardInterrupt:
        pass
