"""``labctl serve`` as a subprocess for tests: its own data dir and config, stopped by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from labctl.bus.broker import PrivateBroker, free_port
from labctl.serve.discovery import read_info

REPO = Path(__file__).resolve().parents[1]
CTL = "ctl-serve-test"


class Served:
    """A ``labctl serve`` subprocess with its own data dir and config."""

    def __init__(
        self,
        root: Path,
        broker: PrivateBroker,
        speed: float = 300_000,
        serial: list[dict[str, object]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.data = root / "data"
        self.config = root / "labctl.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(self.data),
                    "controller": CTL,
                    "broker": {"mode": "external", "host": broker.host, "port": broker.port},
                    "rig": {
                        "preflight_timeout_s": 10,
                        "sim": {"speed": speed},
                        "serial": serial or [],
                    },
                    **(extra or {}),
                }
            )
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
        self.env["LABCTL_CONFIG"] = str(self.config)
        # free_port's port can be taken (as some connection's source port) before serve binds
        # it; on a busy machine that happened: try another.
        for attempt in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "labctl.cli.main", "serve", "--http", f"127.0.0.1:{self.port}"),
                ],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 20
            while read_info(self.data) is None:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    out = self.proc.communicate()
                    if "address already in use" in out[1] and attempt < 2:
                        break
                    raise AssertionError(f"serve did not start: {out}")
                time.sleep(0.05)
            else:
                return

    @property
    def url(self) -> str:
        """Where the controller's HTTP server listens."""
        return f"http://127.0.0.1:{self.port}"

    def run(self, spec: Path) -> subprocess.Popen[str]:
        """``labctl run SPEC --json`` through this controller, in the background."""
        return subprocess.Popen(
            [sys.executable, "-m", "labctl.cli.main", "run", str(spec), "--json"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def labctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labctl.cli.main", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def devices(self) -> dict[str, dict[str, Any]]:
        out = self.labctl("devices", "--json")
        assert out.returncode == 0, out.stderr
        return {d["key"]: d for d in json.loads(out.stdout)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
