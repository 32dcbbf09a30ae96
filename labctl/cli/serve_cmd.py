"""``labctl serve``: the long-running controller for a rig."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator

import click
import uvicorn
from rich.console import Console

from labctl.cli.common import fail, settings
from labctl.serve.api import create_app
from labctl.serve.discovery import ServeInfo, new_token, read_info, remove_info, write_info
from labctl.serve.service import ControllerService


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``labctl serve`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port), in words when wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8470)")
    return host or "127.0.0.1", int(port)


@click.command("serve")
@click.option(
    "--http",
    "http",
    default="127.0.0.1:8470",
    show_default=True,
    help="Where the controller's API and the dashboard (/dashboard/) listen.",
)
def serve(http: str) -> None:
    """Run the controller for the configured rig until SIGTERM or Ctrl-C.

    Keeps the device registry current, announces the controller on the bus, and hosts
    `labctl run` for this data directory (two runs never share a device).
    """
    s = settings()
    host, port = parse_http(http)
    running = read_info(s.data_dir)
    if running is not None:
        fail(f"a controller (pid {running.pid}) already serves {s.data_dir} at {running.url}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(s, host, port))


async def _serve(s: object, host: str, port: int) -> None:
    from labctl.config import Settings

    assert isinstance(s, Settings)
    console = Console(stderr=True)
    service = ControllerService(s)
    token = new_token()
    server = _Server(
        uvicorn.Config(
            create_app(service, token), host=host, port=port, log_level="warning", lifespan="off"
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        console.print("[yellow]stopping: finishing runs and going offline[/yellow]")
        service.stopping.set()
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    ready = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            ctl = tg.create_task(service.run(ready))
            await asyncio.wait(
                [ctl, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if ctl.done():
                return
            http = tg.create_task(server.serve())
            # serve.json says "come in": write it only once the socket listens.
            while not server.started and not http.done():  # noqa: ASYNC110 - uvicorn sets a flag
                await asyncio.sleep(0.02)
            if http.done():
                return
            url = f"http://{host}:{port}"
            write_info(s.data_dir, ServeInfo(os.getpid(), url, token, s.controller))
            console.print(
                f"controller {s.controller} serving rig {s.rig.name} at {url} (data {s.data_dir})"
            )
    finally:
        remove_info(s.data_dir, os.getpid())
