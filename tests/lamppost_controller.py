"""The lamppost scale test's and benchmarks' processes: a controller, the simulator, the spool.

The controller is the real ingest path — :func:`labctl.rig.runtime.open_runtime` against an
external broker: bus, edge (validation, dedupe), spool, listeners, ``CommandClient`` — in a
process of its own, so its CPU and memory can be measured cleanly from outside, plus the
hooks a measurement needs, reported as JSON lines in a file:

``{"event": "ready", "pid": …}``
    the runtime is open;
``{"event": "tick", "t": …, "wall": …, "readings": …, "online": …, "traced": …}``
    every ``--interval`` seconds: readings accepted so far, devices online, and with
    ``--tracemalloc`` the bytes Python holds (after a full garbage collection);
``{"event": "commands-start", "wall": …}``, then
``{"event": "commands", "outcomes": [[round, device, status, accepted, latency_s, sent_s], …]}``
    with ``--command-rounds``: once every round of ``set_level`` to every online node is done;
``{"event": "final", "readings": …}``
    at SIGTERM; with ``--latency FILE`` the device time stamp and the controller's arrival
    time of every reading are saved there (``numpy.savez``: ``ts``, ``arrival``).

Run it as ``python -m tests.lamppost_controller --host H --port P --data-dir D --report F``.
:class:`ControllerProcess` and :class:`Simulator` start and stop the two processes by pid;
:func:`spooled_telemetry` reads back what the controller stored.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.procs import terminate

REPO = Path(__file__).resolve().parents[1]


# --- the controller process -----------------------------------------------------------------


@dataclass(frozen=True)
class CommandPlan:
    """Rounds of ``set_level`` to every online node, all nodes of a round at once."""

    nodes: int
    """Start once this many devices are online…"""
    warmup_s: float = 5.0
    """…and this many seconds have passed."""
    rounds: int = 10
    gap_s: float = 1.0
    """Pause between rounds."""
    timeout_s: float = 5.0
    concurrency: int = 0
    """Commands in flight at once within a round (waves); 0: the whole round at once."""


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


async def _controller(args: argparse.Namespace) -> None:
    from labctl.bus.edge import EdgeResult
    from labctl.config import load_settings
    from labctl.readings import DeviceRef
    from labctl.rig.reservations import Reservations
    from labctl.rig.runtime import open_runtime

    report = Path(args.report)
    settings = load_settings(
        data_dir=Path(args.data_dir),
        controller=args.controller,
        broker={"mode": "external", "host": args.host, "port": args.port},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ts_log, arrival_log = array("d"), array("d")
    readings = 0

    def on_result(result: EdgeResult) -> None:
        nonlocal readings
        readings += len(result.readings)
        if args.latency:
            for r in result.readings:
                ts_log.append(r.ts)
                arrival_log.append(r.received_ns / 1e9)

    async with open_runtime(settings, Reservations()) as rt:
        rt.controller.listeners.append(on_result)
        await asyncio.to_thread(_append, report, {"event": "ready", "pid": os.getpid()})

        def online() -> list[DeviceRef]:
            return [r.ref for r in rt.directory.all() if r.state == "online"]

        async def ticks() -> None:
            t0 = time.monotonic()
            while True:
                await asyncio.sleep(args.interval)
                traced = None
                if tracemalloc.is_tracing():
                    gc.collect()
                    traced = tracemalloc.get_traced_memory()[0]
                tick = {"event": "tick", "t": time.monotonic() - t0, "wall": time.time(),
                        "readings": readings, "online": len(online()), "traced": traced}
                await asyncio.to_thread(_append, report, tick)

        async def commands(plan: CommandPlan) -> None:
            while len(online()) < plan.nodes:
                await asyncio.sleep(0.1)
            await asyncio.sleep(plan.warmup_s)
            start = {"event": "commands-start", "wall": time.time(), "nodes": len(online())}
            await asyncio.to_thread(_append, report, start)
            outcomes: list[list[object]] = []
            for n in range(plan.rounds):
                devices = online()
                level = (n * 37 + 10) % 101
                wave = plan.concurrency or len(devices)
                t0 = time.time()
                for i in range(0, len(devices), wave):
                    results = await asyncio.gather(
                        *(rt.commands.send(d, "set_level", {"level": level},
                                           timeout_s=plan.timeout_s)
                          for d in devices[i:i + wave])
                    )
                    outcomes += [[n, o.device, o.status, o.accepted, o.latency_s,
                                  o.published_at - t0] for o in results]
                await asyncio.sleep(plan.gap_s)
            await asyncio.to_thread(_append, report, {"event": "commands", "outcomes": outcomes})

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(ticks())]
            if args.command_rounds:
                plan = CommandPlan(args.command_nodes, args.command_warmup, args.command_rounds,
                                   args.command_gap, args.command_timeout,
                                   args.command_concurrency)
                tasks.append(tg.create_task(commands(plan)))
            await stop.wait()
            for t in tasks:
                t.cancel()
    if args.latency:
        import numpy as np

        await asyncio.to_thread(
            np.savez, args.latency, ts=np.frombuffer(ts_log), arrival=np.frombuffer(arrival_log)
        )
    await asyncio.to_thread(_append, report, {"event": "final", "readings": readings})


def main(argv: Sequence[str] | None = None) -> None:
    """The controller process (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m tests.lamppost_controller")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--controller", default="ctl-lamppost-scale")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--latency", default=None)
    ap.add_argument("--command-rounds", type=int, default=0)
    ap.add_argument("--command-nodes", type=int, default=1)
    ap.add_argument("--command-warmup", type=float, default=5.0)
    ap.add_argument("--command-gap", type=float, default=1.0)
    ap.add_argument("--command-timeout", type=float, default=5.0)
    ap.add_argument("--command-concurrency", type=int, default=0)
    args = ap.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 pid`: every thread's stack, to the log
    if args.tracemalloc:
        tracemalloc.start()
    asyncio.run(_controller(args))


# --- the parent side --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """The environment without the caller's ``LABCTL_*`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}




class ControllerProcess:
    """:func:`main` as a child process (stopped by pid)."""

    def __init__(
        self,
        root: Path,
        host: str,
        port: int,
        *,
        interval: float = 5.0,
        trace_memory: bool = False,
        latency: bool = False,
        commands: CommandPlan | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.data_dir = root / "data"
        self.report = root / "controller.jsonl"
        self.latency_file = root / "latency.npz" if latency else None
        argv = [sys.executable, "-m", "tests.lamppost_controller", "--host", host, "--port",
                str(port), "--data-dir", str(self.data_dir), "--report", str(self.report),
                "--interval", str(interval)]
        if trace_memory:
            argv.append("--tracemalloc")
        if self.latency_file is not None:
            argv += ["--latency", str(self.latency_file)]
        if commands is not None:
            argv += ["--command-rounds", str(commands.rounds), "--command-nodes",
                     str(commands.nodes), "--command-warmup", str(commands.warmup_s),
                     "--command-gap", str(commands.gap_s), "--command-timeout",
                     str(commands.timeout_s), "--command-concurrency",
                     str(commands.concurrency)]
        self._log = (root / "controller.log").open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=_env(), stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        """The controller's process id."""
        return self.proc.pid

    def spool_pid(self) -> int:
        """The process id of the controller's spool process (its child)."""
        import psutil

        for child in psutil.Process(self.proc.pid).children():
            if "labctl.metrics.spool_process" in " ".join(child.cmdline()):
                return child.pid
        raise AssertionError("the controller has no spool process")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Everything reported so far (of one ``kind``)."""
        if not self.report.exists():
            return []
        lines = self.report.read_text(encoding="utf-8").splitlines()
        out = [json.loads(line) for line in lines if line.endswith("}")]
        return [e for e in out if kind is None or e["event"] == kind]

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        """The first event of ``kind``; RuntimeError with the log if it does not come."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind)
            if found:
                return found[0]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the controller did not report {kind!r}:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """The tail of the controller's output."""
        return (self.root / "controller.log").read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """SIGTERM, wait; the ``final`` event if it wrote one."""
        terminate(self.proc, timeout)
        self._log.close()
        final = self.events("final")
        return final[0] if final else None


class Simulator:
    """``python -m labctl_sim --preset lampposts-scale --lampposts N`` (stopped by pid)."""

    def __init__(
        self,
        host: str,
        port: int,
        nodes: int,
        stats: Path,
        *,
        start: str = "now",
        speed: float = 1.0,
        extra: Sequence[str] = (),
    ) -> None:
        self.stats_path = stats
        self.nodes = nodes
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labctl_sim", "--host", host, "--port", str(port),
             "--preset", "lampposts-scale", "--lampposts", str(nodes), "--speed", str(speed),
             "--start", start, "--stats", str(stats), *extra],
            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._online = 0
        self._cond = threading.Condition()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read_events, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        return self.proc.pid

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"online "):
                with self._cond:
                    self._online += 1
                    self._cond.notify_all()

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def wait_online(self, timeout: float) -> float:
        """Wait until every node came online; the wall time it happened."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._online >= self.nodes, timeout):
                raise RuntimeError(
                    f"{self._online} of {self.nodes} nodes online after {timeout:g} s:\n"
                    + b"".join(self._stderr).decode(errors="replace")[-3000:]
                )
        return time.time()

    def stop(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """SIGTERM (the nodes flush and go offline), wait, and return the stats file."""
        terminate(self.proc, timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"the simulator exited with {self.proc.returncode}:\n"
                + b"".join(self._stderr).decode(errors="replace")[-3000:]
            )
        data: dict[str, dict[str, Any]] = json.loads(self.stats_path.read_text())
        return data


# --- reading back -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spooled:
    """One telemetry point the controller stored."""

    device: str
    session: str
    seq: int
    ts: float


def spooled_telemetry(spool_dir: Path) -> Iterator[Spooled]:
    """Every telemetry point in the spool (whatever run it belongs to)."""
    from labctl.metrics.lineparse import parse_fields, parse_series, split_line
    from labctl.metrics.replay import read_range
    from labctl.metrics.spool import SPOOL_START, Spool, SpoolPosition

    segments = Spool.open_reader(spool_dir).segments()
    if not segments:
        return
    end = SpoolPosition(segments[-1].number, segments[-1].size)
    for line in read_range(spool_dir, SPOOL_START, end):
        series, section, ts_ns = split_line(line)
        if not series.startswith("telemetry,"):
            continue
        _, tags = parse_series(series)
        fields = parse_fields(section)
        seq, session = fields["seq"], fields["session"]
        assert isinstance(seq, int) and isinstance(session, str)
        yield Spooled(f"{tags['vendor']}/{tags['device']}", session, seq, ts_ns / 1e9)


if __name__ == "__main__":
    main()
