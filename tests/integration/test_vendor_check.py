"""``labctl vendor check`` against the shell reference device on a real Mosquitto.

The reference device (firmware-stubs/reference-device/device.sh) is written only from
docs/protocol.md with sh, mosquitto_pub and mosquitto_sub; it must pass every check, its whole
life included (the check stops, restarts and kills it through shell commands, as CI would).
Copies with one deliberate bug each — the kind of bug a vendor makes — must fail exactly the
matching check, with the reason in words.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labctl.bus.broker import PrivateBroker
from tests.conftest import REPO

pytestmark = pytest.mark.integration

REFERENCE = REPO / "firmware-stubs" / "reference-device" / "device.sh"
KEY = "acme/thermo-1"


@dataclass
class ShellDevice:
    """One copy of the reference device, started and stopped by pid (its process group)."""

    script: Path
    broker: PrivateBroker
    work: Path

    @property
    def pidfile(self) -> Path:
        return self.work / "device.pid"

    @property
    def start_cmd(self) -> str:
        env = (
            f"VENDOR=acme DEVICE=thermo-1 LAB_HOST={self.broker.host} "
            f"LAB_PORT={self.broker.port} RATE_HZ=5 KEEPALIVE=5"
        )
        log, pid = shlex.quote(str(self.work / "device.log")), shlex.quote(str(self.pidfile))
        return f"{env} setsid sh {shlex.quote(str(self.script))} >>{log} 2>&1 & echo $! >{pid}"

    @property
    def stop_cmd(self) -> str:
        return f"kill -TERM $(cat {shlex.quote(str(self.pidfile))})"

    @property
    def kill_cmd(self) -> str:
        # The whole process group, like a power cut: the shell and its mosquitto clients.
        return f"kill -KILL -$(cat {shlex.quote(str(self.pidfile))})"

    def start(self) -> None:
        subprocess.run(["/bin/sh", "-c", self.start_cmd], check=True, timeout=10)

    def cleanup(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(self.pidfile.read_text().strip()), signal.SIGKILL)

    def log(self) -> str:
        path = self.work / "device.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
def device_factory(broker: PrivateBroker, tmp_path: Path) -> Iterator[Any]:
    for tool in ("mosquitto_pub", "mosquitto_sub", "stdbuf", "setsid"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (scripts/test installs mosquitto-clients)")
    started: list[ShellDevice] = []

    def make(patch: tuple[str, str] | None = None) -> ShellDevice:
        script = REFERENCE
        if patch is not None:
            text = REFERENCE.read_text()
            old, new = patch
            assert text.count(old) == 1, f"the reference device no longer contains {old!r}"
            script = tmp_path / "broken.sh"
            script.write_text(text.replace(old, new))
        dev = ShellDevice(script, broker, tmp_path)
        started.append(dev)
        dev.start()
        return dev

    yield make
    for dev in started:
        dev.cleanup()


def run_check(broker: PrivateBroker, cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``labctl vendor check`` as a vendor would run it, configured by environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env |= {
        "LABCTL_BROKER__MODE": "external",
        "LABCTL_BROKER__HOST": broker.host,
        "LABCTL_BROKER__PORT": str(broker.port),
        "LABCTL_DATA_DIR": str(cwd / "data"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labctl.cli.main",
            "vendor",
            "check",
            KEY,
            "--json",
            "--no-interactive",
            "--timeout",
            "5",
            "--presence-timeout",
            "10",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["id"]: (c["outcome"], c["detail"]) for c in report["checks"]}


def test_reference_device_passes_every_check(
    broker: PrivateBroker, device_factory: Any, tmp_path: Path
) -> None:
    dev = device_factory()
    code, report, stderr = run_check(
        broker,
        tmp_path,
        "--stop-cmd",
        dev.stop_cmd,
        "--start-cmd",
        dev.start_cmd,
        "--kill-cmd",
        dev.kill_cmd,
    )
    failed = {k: v for k, v in outcomes(report).items() if v[0] != "pass"} if report else {}
    assert code == 0, f"{failed}\n{stderr}\n{dev.log()}"
    assert report["passed"] and report["complete"]
    assert not failed
    got = outcomes(report)
    assert "expired" in got["command.expired"][1]
    assert "lost" in got["presence.lost"][1]
    assert "state lost" in got["presence.retained"][1]  # killed last: the will is retained


BROKEN = {
    "wrong vendor in the manifest": (
        ('"$VENDOR" "$DEVICE" "$MODEL"', '"someone-else" "$DEVICE" "$MODEL"'),
        "manifest.identity",
        "manifest says someone-else/thermo-1",
    ),
    "no accepted before the final answer": (
        ('respond "$1" "$(accepted "$1")"\n\tRUNS=', "RUNS="),
        "command.round_trip",
        "without an `accepted`",
    ),
    "a repeated id is executed again": (
        ('if [ -f "$WORK/done/$id" ]; then', "if false; then"),
        "command.duplicate",
        "executed the repeated id again",
    ),
    "an expired command is executed": (
        ('if later_than "$(now)" "$deadline"; then', "if false; then"),
        "command.expired",
        "executed a command whose deadline was 30 s past",
    ),
}


@pytest.mark.parametrize("bug", list(BROKEN), ids=[b.replace(" ", "-") for b in BROKEN])
def test_a_broken_device_fails_the_matching_check(
    bug: str, broker: PrivateBroker, device_factory: Any, tmp_path: Path
) -> None:
    patch, check_id, reason = BROKEN[bug]
    dev = device_factory(patch)
    code, report, stderr = run_check(broker, tmp_path, "--skip", "presence")
    assert code == 1, f"{stderr}\n{dev.log()}"
    got = outcomes(report)
    outcome, detail = got[check_id]
    assert outcome == "fail", got
    assert reason in detail, detail
    assert not report["passed"]


def test_a_v5_presence_connection_loses_its_clean_offline(
    broker: PrivateBroker, device_factory: Any, tmp_path: Path
) -> None:
    """mosquitto_sub -V mqttv5 sends its will when stopped by a signal: `offline`, then
    `lost` — the pitfall docs/protocol.md warns about, caught by the check."""
    dev = device_factory(("-V mqttv311 -q 1 -v -d", "-V mqttv5 -q 1 -v -d"))
    code, report, stderr = run_check(
        broker, tmp_path, "--skip", "commands", "--skip", "telemetry", "--stop-cmd", dev.stop_cmd
    )
    assert code == 1, stderr
    outcome, detail = outcomes(report)["presence.offline"]
    assert outcome == "fail"
    assert "followed by the Last Will" in detail
