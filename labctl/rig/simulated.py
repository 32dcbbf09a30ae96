"""The simulated rig: the ``labctl_sim`` device simulators as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from labctl.config import SimSettings


class SimulatorError(RuntimeError):
    """The simulated rig failed; the message says why."""


class SimulatedRig:
    """Starts ``python -m labctl_sim`` against the controller's broker and stops it cleanly."""

    def __init__(
        self,
        settings: SimSettings,
        host: str,
        port: int,
        stats_file: Path,
        until_s: float,
        log_file: Path,
        register: Path | None = None,
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.stats_file = stats_file
        self.until_s = until_s
        self.log_file = log_file
        self.register = register
        """A scene dataset whose signboard register simulated AI boxes enroll."""
        self.serial_ports = log_file.parent / "sim-serial.json"
        """Written by the simulator once its serial ptys exist (see ``labctl.serialio.rig``)."""
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Launch the simulators."""
        s = self.settings
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "labctl_sim",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--preset",
            s.preset,
            "--seed",
            str(s.seed),
            "--speed",
            repr(s.speed),
            "--start",
            s.start,
            "--batch",
            str(s.batch),
            "--until",
            f"{int(self.until_s)}s",
            "--stats",
            str(self.stats_file),
            "--serial-dir",
            str(self.log_file.parent / "serial"),
            "--serial-ports",
            str(self.serial_ports),
        ]
        if self.register is not None:
            args += ["--register", str(self.register)]
        with self.log_file.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the operator's Ctrl-C goes to labctl, which stops us
            )

    def check(self) -> None:
        """Raise if the simulators died."""
        if self._proc is not None and self._proc.returncode is not None:
            tail = (
                self.log_file.read_text(errors="replace")[-1500:] if self.log_file.exists() else ""
            )
            raise SimulatorError(
                f"the simulated rig exited with code {self._proc.returncode}:\n{tail}"
            )

    async def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (devices flush, publish offline, write stats), then kill after a timeout."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
