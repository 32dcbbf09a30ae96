"""``python -m labctl_sim.aibox``: run simulated AI boxes against a broker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path

import click

from labctl_sim.aibox.run import run_boxes
from labctl_sim.aibox.spec import BoxOptions, BoxSpec, default_boxes, signsight_s1, urbaneye_pro
from labctl_sim.device import DeviceEvent


def _print_event(event: DeviceEvent) -> None:
    if event.kind in ("online", "offline"):
        print(f"{event.kind} {event.key} session={event.session}", flush=True)


def _boxes(variant: str | None, vendor: str | None, device: str | None) -> list[BoxSpec]:
    if variant is None and vendor is None and device is None:
        return default_boxes()
    base = urbaneye_pro() if variant == "robust" else signsight_s1()
    return [dataclasses.replace(base, vendor=vendor or base.vendor, id=device or base.id)]


async def _run(host: str, port: int, register: Path, boxes: list[BoxSpec],
               options: BoxOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_boxes(host, port, register, boxes, stop, options, _print_event)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="MQTT broker host.")
@click.option("--port", default=1883, show_default=True, type=click.IntRange(1, 65535))
@click.option("--register", "register", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Dataset directory holding register.json and the templates.")
@click.option("--vendor", default=None, help="Vendor name (default: the variant's preset).")
@click.option("--device", default=None, help="Device id (default: the variant's preset).")
@click.option("--variant", default=None, type=click.Choice(["fast", "robust"]),
              help="Detector variant. Without --variant/--vendor/--device: both preset boxes.")
@click.option("--queue", default=8, show_default=True, type=click.IntRange(1, 10_000),
              help="Frames queued before the oldest is dropped.")
@click.option("--delay", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Fault: extra seconds of processing per frame.")
@click.option("--misbehave", is_flag=True, help="Fault: detections for unknown frames and "
              "boxes outside the image.")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def main(host: str, port: int, register: Path, vendor: str | None, device: str | None,
         variant: str | None, queue: int, delay: float, misbehave: bool, log_level: str) -> None:
    """Run simulated signboard-recognition AI boxes over MQTT (labctl/1) until SIGTERM."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = BoxOptions(queue_size=queue, extra_delay_s=delay, misbehave=misbehave)
    try:
        asyncio.run(_run(host, port, register, _boxes(variant, vendor, device), options))
    except* ValueError as group:  # an unusable register, a vendor name the topics refuse
        click.echo(f"labctl-aibox: {group.exceptions[0]}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
