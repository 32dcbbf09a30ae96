"""``labctl serial sniff``: decode what a port says, live, without the rest of the controller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from labctl.drivers import serial_driver_registry
from labctl.serial_driver import DecodeResult, SerialDriver
from labctl.serialio.port import PortGone, SerialPort, open_port


def make_driver(name: str, options: Mapping[str, Any]) -> SerialDriver:
    """A serial driver by name; PluginError/ValueError in words."""
    return serial_driver_registry().get(name).from_options(options)


async def sniff(
    path: str,
    driver: SerialDriver,
    baud: int | None,
    on_result: Callable[[DecodeResult], None],
    *,
    poll: bool = False,
    max_frames: int | None = None,
    seconds: float | None = None,
) -> int:
    """Decode ``path`` until ``max_frames`` frames, ``seconds`` or the port goes away; with
    ``poll``, first send the driver's setup commands and poll it as the transport would.
    Returns the number of frames. PortError for a port that cannot be opened."""
    port = await asyncio.to_thread(open_port, path, baud or driver.default_baud)
    frames = 0
    decoder = driver.decoder()
    deadline = None if seconds is None else time.monotonic() + seconds
    gone: PortGone | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            poller = tg.create_task(_poll(port, driver)) if poll else None
            try:
                while max_frames is None or frames < max_frames:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    try:
                        data = await asyncio.wait_for(port.read(), left)
                    except TimeoutError:
                        break
                    except PortGone as exc:
                        gone = exc
                        break
                    result = decoder.feed(data)
                    frames += len(result.frames)
                    on_result(result)
            finally:
                if poller is not None:
                    poller.cancel()
        on_result(decoder.flush())
    finally:
        port.close()
    if gone is not None:
        raise gone
    return frames


async def _poll(port: SerialPort, driver: SerialDriver) -> None:
    try:
        for cmd in driver.startup():
            await port.write(cmd)
        poll = driver.poll()
        while poll is not None:
            await port.write(poll)
            await asyncio.sleep(driver.poll_interval_s)
    except PortGone:
        return  # the reading side reports it
