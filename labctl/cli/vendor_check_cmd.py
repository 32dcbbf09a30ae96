"""``labctl vendor check VENDOR/DEVICE``: a labctl/1 conformance run, as a checklist.

Registered on the ``vendor`` group by :mod:`labctl.cli.main`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import click
import httpx

from labctl.bus.mqtt import BusError
from labctl.cli.common import echo_json, fail, settings
from labctl.cli.exit_codes import ExitCode
from labctl.config import Settings
from labctl.conformance import CheckOptions, CheckSetupError, Outcome, Report, run_conformance
from labctl.conformance.catalog import SKIPPABLE
from labctl.protocol.topics import is_valid_name
from labctl.readings import DeviceRef
from labctl.rig.registry import DeviceView
from labctl.serve.discovery import read_info

MARKS = {Outcome.PASS: "✔", Outcome.FAIL: "✘", Outcome.SKIPPED: "–", Outcome.NOT_RUN: "–"}
PREFIX = {Outcome.SKIPPED: "skipped: ", Outcome.NOT_RUN: "not run: "}


def render(report: Report) -> str:
    """The checklist in words: one line per check, grouped by stage, then the verdict."""
    lines = [
        f"labctl/1 conformance of {report.device} on {report.broker} ({report.duration_s:.1f} s)"
    ]
    stage = ""
    for r in report.results:
        if r.check.stage != stage:
            stage = r.check.stage
            lines.append(f"\n{stage}")
        advice = "" if r.check.required else " (recommended)"
        lines.append(
            f"  {MARKS[r.outcome]} {r.check.title}{advice}: "
            f"{PREFIX.get(r.outcome, '')}{r.detail}  [{r.check.id}]"
        )
    if report.lab_errors:
        lines.append("\nthe lab's controller also explained on _err:")
        lines += [f"  • {e}" for e in report.lab_errors[:10]]
    lines.append("\n" + report.summary())
    return "\n".join(lines)


def _reserved_by(s: Settings, key: str) -> str | None:
    """The run holding ``key`` when `labctl serve` runs for this data directory."""
    info = read_info(s.data_dir)
    if info is None:
        return None
    try:
        with info.client(timeout=5) as c:
            r = c.get("/api/devices")
            r.raise_for_status()
            views = [DeviceView.model_validate(d) for d in r.json()]
    except (httpx.HTTPError, ValueError):
        return None
    return next((v.reserved_by for v in views if v.key == key), None)


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.command("check")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    help="Seconds to wait for any one reaction of the device (manifest, command answer).",
)
@click.option(
    "--presence-timeout",
    type=click.FloatRange(min=1),
    default=100.0,
    show_default=True,
    help="Seconds to wait for offline, a restart or the Last Will (≥ 1.5 × keepalive).",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Seconds of telemetry to judge [default: 5 samples of the slowest channel, 2–60 s].",
)
@click.option("--stop-cmd", metavar="CMD", help="Shell command that stops the device cleanly.")
@click.option("--start-cmd", metavar="CMD", help="Shell command that starts it again.")
@click.option(
    "--kill-cmd", metavar="CMD", help="Shell command that ends it abruptly (kill -9, power off)."
)
@click.option(
    "--interactive/--no-interactive",
    default=None,
    help="Ask the operator to stop, start and kill the device when no command is given "
    "[default: when stdin is a terminal].",
)
@click.option(
    "--skip",
    type=click.Choice(SKIPPABLE),
    multiple=True,
    help="Leave out a stage (repeatable); the run then counts as partial.",
)
def check(
    device: str,
    as_json: bool,
    timeout: float,
    presence_timeout: float,
    window: float | None,
    stop_cmd: str | None,
    start_cmd: str | None,
    kill_cmd: str | None,
    interactive: bool | None,
    skip: tuple[str, ...],
) -> None:
    """Check that DEVICE (VENDOR/DEVICE) speaks labctl/1 as docs/protocol.md says.

    Stages, in order: manifest and presence; telemetry against the declared channels and
    rates; commands (noop round trip, a duplicate id, an expired deadline, a deadline miss);
    presence over the device's life (clean stop, restart, Last Will on kill), which needs
    --stop-cmd/--start-cmd/--kill-cmd or an operator at the terminal. Prints one line per
    check. Exit 0 when every required check passed, 1 when one failed or could not run,
    2 on a usage error, 3 when the broker cannot be reached.
    """
    try:
        ref = DeviceRef.parse(device)
    except ValueError as exc:
        fail(str(exc))
    if not (is_valid_name(ref.vendor) and is_valid_name(ref.device)):
        fail(f"{device!r}: vendor and device names are [a-z0-9-]+ (see docs/protocol.md)")
    s = settings()
    holder = _reserved_by(s, ref.key)
    if holder:
        fail(f"{ref.key} is in run {holder}; a conformance check would disturb it")
    options = CheckOptions(
        timeout_s=timeout,
        presence_timeout_s=presence_timeout,
        window_s=window,
        stop_cmd=stop_cmd,
        start_cmd=start_cmd,
        kill_cmd=kill_cmd,
        interactive=sys.stdin.isatty() if interactive is None else interactive,
        skip=frozenset(skip),
    )
    # The command client warns about every late response; here they are expected, and the
    # checklist says what they mean.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = asyncio.run(run_conformance(s, ref, options, _say))
    except CheckSetupError as exc:
        fail(str(exc))
    except BusError as exc:
        fail(str(exc), ExitCode.RIG_FAULT)
    if as_json:
        echo_json(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render(report))
    raise SystemExit(int(ExitCode.PASS if report.passed else ExitCode.FAIL))
