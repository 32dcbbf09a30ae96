"""Running ``labctl`` as a user would: a subprocess with its own config and data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.bus.broker import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "trials" / "pm25-collocation.yaml"


@dataclass
class Lab:
    """A data directory and config for one ``labctl`` user."""

    root: Path
    config: dict[str, Any]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        path = self.root / "labctl.yaml"
        path.write_text(yaml.safe_dump(self.config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
        env["LABCTL_CONFIG"] = str(path)
        return env

    def labctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labctl.cli.main", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "labctl.cli.main", *args],
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def spec(self, **over: Any) -> Path:
        """The shipped PM2.5 spec with some fields replaced."""
        data = yaml.safe_load(SPEC.read_text())
        data.update(over)
        path = self.root / f"spec-{len(list(self.root.glob('spec-*')))}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def sim_published(self, run_id: str) -> int:
        stats = json.loads((self.data_dir / "runs" / run_id / "sim-stats.json").read_text())
        return sum(int(d["published"]) for d in stats.values())


@pytest.fixture
def lab(tmp_path: Path, broker: PrivateBroker) -> Lab:
    """A lab on the test's own broker (external mode, so the test can restart it)."""
    return Lab(
        tmp_path,
        {
            "data_dir": str(tmp_path / "data"),
            "controller": "ctl-test",
            "broker": {"mode": "external", "host": broker.host, "port": broker.port},
            "metrics": {"influx": [], "drain_timeout_s": 60},
        },
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> None:
    """Read the process's stderr until a line contains ``needle``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not seen on stderr within {timeout} s")


def interrupt(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)


@pytest.fixture
def sims_gone(broker: PrivateBroker) -> Iterator[None]:
    """After the test, no simulator of this test's rig may be left running."""
    yield
    out = subprocess.run(
        ["pgrep", "-f", f"labctl_sim .*--port {broker.port} "], capture_output=True, text=True
    )
    assert not out.stdout.split(), f"simulator processes left running: {out.stdout.split()}"
