"""``labctl-sim``: run a simulated rig against an MQTT broker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from labctl.trial.durations import parse_duration
from labctl_sim.device import DeviceEvent, DeviceOptions
from labctl_sim.lamppost.fleet import CONNECTS_PER_S
from labctl_sim.models import load_preset
from labctl_sim.rig import Rig, RigConfig


def _parse_start(text: str) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time like 2026-06-01T00:00:00Z"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _print_event(event: DeviceEvent) -> None:
    if event.kind == "online":
        print(f"online {event.key} session={event.session}", flush=True)
    elif event.kind == "done":
        print(f"done {event.key} session={event.session} {event.detail}", flush=True)
    elif event.kind == "offline":
        print(f"offline {event.key} session={event.session}", flush=True)


def _freeze_heap() -> None:
    """Leave the rig's long-lived objects (its devices, their clients) out of garbage
    collection from now on: at 1,000 lamppost nodes a full collection over them paused the
    loop for ~0.2 s every half minute, which the lab measured as telemetry latency."""
    gc.collect()
    gc.freeze()


async def _run(rig: Rig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Once every device is up (lamppost nodes connect at CONNECTS_PER_S).
    loop.call_later(5.0 + len(rig.config.preset.lampposts) / CONNECTS_PER_S, _freeze_heap)
    await rig.run(stop)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="MQTT broker host.")
@click.option("--port", default=1883, show_default=True, type=click.IntRange(1, 65535))
@click.option("--seed", default=42, show_default=True, type=int, help="World and noise seed.")
@click.option(
    "--speed", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
    help="Device seconds per real second (300000: 30 days in under 9 s).",
)
@click.option(
    "--start", default=None,
    help="Device-clock time at start, ISO 8601 (default: now, rounded down to the minute); "
         "'now': the wall clock when the devices start (at speed 1 device time = wall time).",
)
@click.option("--until", default=None, help="Stop producing after this device time, e.g. 30d.")
@click.option("--batch", default=60, show_default=True, type=click.IntRange(1, 10_000),
              help="Samples per telemetry message.")
@click.option("--stats", "stats_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write delivery stats (JSON) here at exit.")
@click.option("--preset", default="pm25-collocation", show_default=True,
              help="Built-in preset name or a .json/.yaml preset file.")
@click.option("--lampposts", "lamppost_nodes", default=None, type=click.IntRange(1, 10_000),
              envvar="LABCTL_SIM_LAMPPOSTS",
              help="Nodes of the lampposts-scale preset [default: 100; env LABCTL_SIM_LAMPPOSTS].")
@click.option("--register", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Scene dataset whose signboard register AI boxes enroll (signboard-boxes).")
@click.option("--flush-timeout", default=10.0, show_default=True, type=float,
              help="Seconds to keep delivering buffered samples after SIGTERM.")
@click.option("--serial-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the stable links of serial simulators (ptys).")
@click.option("--serial-ports", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the serial ports file (links, drivers, clock) here once they exist.")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def main(
    host: str, port: int, seed: int, speed: float, start: str | None, until: str | None,
    batch: int, stats_path: Path | None, preset: str, lamppost_nodes: int | None,
    register: Path | None, flush_timeout: float, serial_dir: Path | None,
    serial_ports: Path | None, log_level: str,
) -> None:
    """Run the simulated devices of a rig over MQTT (labctl/1) until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rig_preset = load_preset(preset, lamppost_nodes=lamppost_nodes)
        until_s = parse_duration(until) if until is not None else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if rig_preset.aiboxes and register is None:
        raise click.UsageError(f"preset {preset!r} has AI boxes: give --register DATASET")
    start_now = start == "now"
    if start_now:
        start_ts = datetime.now(UTC).timestamp()
    elif start is not None:
        start_ts = _parse_start(start)
    else:
        start_ts = float(int(datetime.now(UTC).timestamp()) // 60 * 60)
    config = RigConfig(
        host=host, port=port, start=start_ts, start_now=start_now, seed=seed, speed=speed,
        until_s=until_s,
        preset=rig_preset, stats_path=stats_path, serial_dir=serial_dir, serial_ports=serial_ports,
        register=register,
        device=DeviceOptions(batch=batch, flush_timeout_s=flush_timeout),
    )
    rig = Rig(config, on_event=_print_event)
    try:
        asyncio.run(_run(rig))
    except Exception as exc:  # the stats file is already written; say why in one line
        click.echo(f"labctl-sim: {exc!r}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
