"""A private Mosquitto broker run as a child process: the embedded default for demos and tests.

The broker gets its own configuration file, a private loopback port, persistence in the data
directory (so a restart keeps QoS 1 sessions) and queue limits sized for a trial's peak backlog:
Mosquitto's default ``max_queued_messages`` (1000) silently drops messages for a subscriber
that falls behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from labctl.procs import terminate

INSTALL_HINT = (
    "the 'mosquitto' broker is not installed; install it with "
    "'sudo apt-get install mosquitto' (Debian/Ubuntu), 'brew install mosquitto' (macOS), "
    "or point labctl at an existing broker with LABCTL_BROKER__MODE=external "
    "LABCTL_BROKER__HOST=… LABCTL_BROKER__PORT=…"
)


class BrokerError(RuntimeError):
    """The private broker could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class BrokerLimits:
    """Queue and size limits written into the broker configuration."""

    max_queued_messages: int = 1_000_000
    max_inflight_messages: int = 1000
    message_size_limit: int = 1024 * 1024
    persistent_client_expiration: str = "1d"


def render_config(directory: Path, port: int, limits: BrokerLimits) -> str:
    """The mosquitto.conf text of a private, loopback-only broker."""
    # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write its
    # persistence file into a root-owned directory: a restart would then lose queued QoS 1
    # messages. The broker is private and loopback-only, so it keeps the caller's identity.
    user = ["user root"] if os.geteuid() == 0 else []
    return "\n".join(
        [
            "# Written by labctl: a private broker for one controller and its simulated rig.",
            *user,
            "per_listener_settings false",
            "allow_anonymous true",
            f"listener {port} 127.0.0.1",
            "persistence true",
            f"persistence_location {directory}/",
            "autosave_interval 30",
            f"max_queued_messages {limits.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {limits.max_inflight_messages}",
            f"message_size_limit {limits.message_size_limit}",
            f"persistent_client_expiration {limits.persistent_client_expiration}",
            # Forward small packets (command responses) at once: with Nagle's algorithm one
            # waits behind unacknowledged telemetry for the client's delayed ACK (40 ms).
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "connection_messages false",
            "",
        ]
    )


class PrivateBroker:
    """A ``mosquitto`` child process on a private loopback port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Restarting keeps the port
    and the persistence file, which is how tests restart the broker mid-trial.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        limits: BrokerLimits | None = None,
        binary: str | None = None,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.limits = limits or BrokerLimits()
        self.binary = binary or shutil.which("mosquitto") or _sbin("mosquitto")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        """Write the config and start the broker; return once it accepts connections."""
        if self.binary is None:
            raise BrokerError(INSTALL_HINT)
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(render_config(self.directory, self.port, self.limits))
        log = (self.directory / "mosquitto.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal must not kill the broker first
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.directory / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise BrokerError(
                    f"mosquitto exited at start (code {self._proc.returncode}):\n{tail}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by pid (SIGTERM, so it saves its persistence file)."""
        proc, self._proc = self._proc, None
        terminate(proc, timeout)

    def kill(self) -> None:
        """Kill the broker without letting it save (a crash)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> PrivateBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sbin(name: str) -> str | None:
    for d in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None
