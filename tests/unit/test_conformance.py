"""The conformance checks as pure functions: telemetry, command verdicts, the report."""

from __future__ import annotations

import ast
import subprocess
from typing import Any

from labctl.cli.vendor_check_cmd import render
from labctl.commands import CommandOutcome
from labctl.conformance.catalog import CHECKS, Checklist
from labctl.conformance.results import Outcome, Report
from labctl.conformance.stage_commands import (
    judge_deadline,
    judge_duplicate,
    judge_expired,
    judge_round_trip,
)
from labctl.conformance.stage_telemetry import window_for
from labctl.conformance.telemetry import (
    Message,
    check_channels,
    check_clock,
    check_rates,
    check_seq,
    check_types,
)
from labctl.protocol.payloads import CommandError, CommandResponse, Manifest
from labctl.readings import DeviceRef, Reading
from tests.conftest import REPO

T0 = 1_767_225_600.0
REF = DeviceRef("acme", "thermo-1")


def manifest(**channel_types: str) -> Manifest:
    channels = channel_types or {"temperature": "float"}
    return Manifest.model_validate(
        {
            "schema": "labctl/1",
            "version": 1,
            "session": "s1",
            "device": {"vendor": "acme", "id": "thermo-1", "model": "m", "serial": "1"},
            "channels": [
                {"name": n, "unit": "u", "type": t, "rate_hz": 2} for n, t in channels.items()
            ],
        }
    )


def messages(
    seqs: list[int], period: float = 0.5, values: dict[str, float] | None = None, **kw: Any
) -> list[Message]:
    out = []
    for seq in seqs:
        ts = T0 + seq * period
        reading = Reading(
            REF, "env", kw.get("session", "s1"), seq, ts, values or {"temperature": 21.0}, 0
        )
        out.append(Message(ts + kw.get("lag", 0.05), (reading,), 0, None))
    return out


def test_telemetry_that_matches_the_manifest_passes() -> None:
    m, msgs = manifest(), messages(list(range(6)))
    assert check_channels(m, msgs, 3).ok
    assert check_types(m, msgs).ok
    rates = check_rates(m, msgs, "s1")
    assert rates.ok and "temperature 2 Hz (declared 2)" in rates.detail
    assert check_seq(msgs, "s1").ok
    assert check_clock(msgs).ok


def test_a_missing_channel_and_a_refused_one_are_named() -> None:
    m = manifest(temperature="float", humidity="float")
    missing = check_channels(m, messages([0, 1]), 2)
    assert not missing.ok and "no sample of humidity in 2 s" in missing.detail
    refused = [Message(T0, (), 0, "channel: channel(s) pm10 not declared in the manifest")]
    found = check_channels(m, refused, 2)
    assert not found.ok and "pm10 not declared" in found.detail


def test_types_rates_gaps_repeats_and_clock_fail_in_words() -> None:
    ints = check_types(manifest(uptime="int"), messages([0], values={"uptime": 1.5}))
    assert not ints.ok and "declared int" in ints.detail
    bools = check_types(manifest(door="bool"), messages([0], values={"door": 2}))
    assert not bools.ok and "send 0 or 1" in bools.detail
    slow = check_rates(manifest(), messages(list(range(5)), period=2.0), "s1")
    assert not slow.ok and "0.5 Hz (declared 2)" in slow.detail
    gap = check_seq(messages([0, 1, 4]), "s1")
    assert not gap.ok and "2 seq number(s) missing between 0 and 4" in gap.detail
    repeated = [Message(T0, (), 3, None), *messages([0])]
    assert "3 sample(s) reused" in check_seq(repeated, "s1").detail
    behind = check_clock(messages([0, 1], lag=30))
    assert not behind.ok and "30.0 s behind" in behind.detail


def test_the_window_gives_the_slowest_channel_five_samples() -> None:
    assert window_for(manifest(), None) == 2.5
    assert window_for(manifest(), 7) == 7


def outcome(status: str, **kw: Any) -> CommandOutcome:
    return CommandOutcome(
        kw.get("id", "c1"),
        REF.key,
        "noop",
        status,  # type: ignore[arg-type]
        kw.get("accepted", True),
        T0,
        T0 + kw.get("latency", 0.05),
        kw.get("result"),
        kw.get("error"),
    )


def res(status: str, runs: int | None = None, code: str | None = None) -> CommandResponse:
    return CommandResponse(
        id="c1",
        status=status,  # type: ignore[arg-type]
        result={"runs": runs} if runs is not None else None,
        error=CommandError(code=code, message="…") if code else None,
    )


def test_round_trip_needs_accepted_and_runs() -> None:
    assert judge_round_trip(outcome("succeeded", result={"runs": 1}), []).ok
    no_accept = judge_round_trip(outcome("succeeded", accepted=False, result={"runs": 1}), [])
    assert not no_accept.ok and "without an `accepted`" in no_accept.detail
    no_runs = judge_round_trip(outcome("succeeded", result={}), [])
    assert not no_runs.ok and '{"runs": n}' in no_runs.detail
    silent = judge_round_trip(outcome("timeout", accepted=False, latency=5), ["schema: status"])
    assert "no answer within 5 s; the lab refused its response: schema" in silent.detail


def test_a_repeated_id_must_not_run_again() -> None:
    first = outcome("succeeded", result={"runs": 3})
    ok = judge_duplicate(first, res("succeeded", 3), outcome("succeeded", result={"runs": 4}), 5)
    assert ok.ok
    refused = judge_duplicate(
        first, res("rejected", code="duplicate"), outcome("succeeded", result={"runs": 4}), 5
    )
    assert refused.ok and "rejected/duplicate" in refused.detail
    again = judge_duplicate(first, res("succeeded", 4), outcome("succeeded", result={"runs": 5}), 5)
    assert not again.ok and "executed the repeated id again" in again.detail
    quietly = judge_duplicate(
        first, res("succeeded", 3), outcome("succeeded", result={"runs": 5}), 5
    )
    assert not quietly.ok and "expected 4" in quietly.detail
    assert "no answer to the repeated id" in judge_duplicate(first, None, first, 5).detail


def test_an_expired_command_must_not_run() -> None:
    before, after = (
        outcome("succeeded", result={"runs": 4}),
        outcome("succeeded", result={"runs": 5}),
    )
    assert (
        "code expired" in judge_expired(before, res("rejected", code="expired"), after, 30).detail
    )
    dropped = judge_expired(before, None, after, 30)
    assert dropped.ok and "recommended" in dropped.detail
    ran = judge_expired(before, res("succeeded", 5), outcome("succeeded", result={"runs": 6}), 30)
    assert not ran.ok and "30 s past" in ran.detail


def test_a_deadline_miss_needs_a_timeout_and_a_late_answer() -> None:
    probe = outcome("succeeded", result={"runs": 9})
    ok = judge_deadline(outcome("timeout", latency=0.5), res("succeeded", 8), 1.6, probe, 1500)
    assert ok.ok and "logged and not applied" in ok.detail
    hasty = judge_deadline(outcome("succeeded", result={"runs": 8}), None, None, probe, 1500)
    assert not hasty.ok and "must take delay_ms" in hasty.detail
    mute = judge_deadline(outcome("timeout", latency=0.5), None, None, probe, 1500)
    assert not mute.ok and "no final response ever came" in mute.detail


def test_the_report_counts_and_renders_one_line_per_check() -> None:
    cl = Checklist()
    cl.record("manifest.present", True, "retained")
    cl.record("manifest.present", False, "ignored: the first result stands")
    cl.record("command.round_trip", False, "no `accepted`")
    cl.skipped(["presence.offline"], "--skip presence")
    report = Report(REF.key, "127.0.0.1:1883", cl.results(), 1.0)
    assert len(report.results) == len(CHECKS)
    assert not report.passed and not report.complete
    assert report.count(Outcome.PASS) == 1
    text = render(report)
    assert "✔ manifest published on …/manifest: retained  [manifest.present]" in text
    assert "✘ noop answered accepted, then succeeded: no `accepted`" in text
    assert "– clean stop: retained offline, no Last Will: skipped: --skip presence" in text
    assert "(recommended)" in text
    assert text.rstrip().splitlines()[-1].startswith("DOES NOT CONFORM: 1 of 20 required")
    assert report.as_dict()["checks"][0]["outcome"] == "pass"


def test_a_full_pass_conforms() -> None:
    cl = Checklist()
    for c in CHECKS:
        cl.record(c.id, True, "fine")
    report = Report(REF.key, "b", cl.results(), 1.0)
    assert report.passed and report.complete
    assert report.summary() == "CONFORMS: 20 of 20 required checks passed"


def test_the_reference_devices_are_valid_sh_and_python() -> None:
    device = REPO / "firmware-stubs" / "reference-device"
    subprocess.run(["sh", "-n", str(device / "device.sh")], check=True)
    ast.parse((device / "micropython" / "main.py").read_text())
