"""The runner API (TrialScript) and YAML steps, with a fake rig host; the reading router's
windows and observations; Python trial files."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from labctl.bus.edge import DetectionEvent, EdgeResult, PresenceChange
from labctl.commands import CommandClient
from labctl.evaluators.result import EvaluationResult
from labctl.observations import (
    CommandObserved,
    DetectionsObserved,
    Observation,
    PresenceObserved,
    ReadingObserved,
    WindowObserved,
)
from labctl.protocol.payloads import Detections
from labctl.readings import DeviceRef, Reading
from labctl.trial.router import ReadingRouter
from labctl.trial.script import ScriptHost, StepFailed, TrialScript, run_steps
from labctl.trial.spec import ReplayStimulus, SpecError, load_spec, parse_spec

A, B = DeviceRef("v", "a"), DeviceRef("v", "b")


class FakeCommands:
    """Answers every command at once: ``set_level`` above 100 is rejected."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send(
        self, ref: DeviceRef, op: str, params: dict[str, Any] | None = None, *, timeout_s: float
    ) -> Any:
        from labctl.commands import CommandOutcome

        self.sent.append((ref.key, op, dict(params or {})))
        level = (params or {}).get("level", 0)
        status = "rejected" if op == "set_level" and level > 100 else "succeeded"
        return CommandOutcome(f"id{len(self.sent)}", ref.key, op, status, True, 1.0, 1.2)


class Host:
    """A rig whose device clock jumps straight to wherever the script waits for."""

    def __init__(self, telemetry: bool = True) -> None:
        self.observed: list[Observation] = []
        self.windows: list[tuple[float, float]] = []
        self.advanced: list[float] = []
        self.now: float | None = 1000.0 if telemetry else None
        self.conditions: list[dict[str, float]] = []
        self.replays: list[ReplayStimulus] = []
        self.events: list[str] = []
        self.commands = FakeCommands()

    async def until(self, end: float) -> None:
        self.now = end

    async def apply(self, conds: Mapping[str, float]) -> str:
        self.conditions.append(dict(conds))
        return "simulator"

    async def replay(self, stim: ReplayStimulus) -> None:
        self.replays.append(stim)

    async def prompt(self, text: str, timeout: float | None) -> None:
        self.events.append(f"prompt {text}")

    def host(self) -> ScriptHost:
        return ScriptHost(
            devices={"dut": [A, B]},
            commands=self.commands,  # type: ignore[arg-type]
            observe=self.observed.append,
            until_device_time=self.until,
            device_now=lambda: self.now,
            add_window=lambda lo, hi: self.windows.append((lo, hi)),
            advance=self.advanced.append,
            set_phase=lambda name: None,
            event=self.events.append,
            check=lambda: None,
            replay=self.replay,
            apply_conditions=self.apply,
            prompt=self.prompt,
            start=1000.0,
        )


YAML = """\
trial: lamp
title: lamp
kind: command-response
devices:
  nodes: {role: dut, channel: power}
criteria: {success_rate: {min: 0.9}}
phases:
  - name: sweep
    steps:
      - command: {op: set_level, params: {level: 50}}
      - wait: 10s
      - stimulus: {set: {loss_pct: 5}}
      - measure: 30s
      - command: {op: set_level, params: {level: 150}, expect: rejected}
      - command: {op: set_level, params: {level: 150}}
      - stimulus: {replay: {limit: 3, deadline: 1s}}
      - prompt: press the button
"""


async def test_yaml_steps_drive_the_runner_api() -> None:
    spec = parse_spec(YAML, Path("lamp.yaml")).spec
    h = Host()
    script = TrialScript(h.host())
    assert spec.phases is not None
    await run_steps(script, spec.phases)
    # Commands go to every device of the role, in order.
    assert [(k, p["level"]) for k, _, p in h.commands.sent] == [
        ("v/a", 50), ("v/b", 50), ("v/a", 150), ("v/b", 150), ("v/a", 150), ("v/b", 150)
    ]
    # The wait moved device time by 10 s, the measurement is the next 30 s.
    assert h.advanced == [1010.0]
    assert h.windows == [(1010.0, 1040.0)]
    windows = [o for o in h.observed if isinstance(o, WindowObserved)]
    assert [(w.edge, w.ts, dict(w.conditions)) for w in windows] == [
        ("start", 1010.0, {"loss_pct": 5.0}),
        ("end", 1040.0, {"loss_pct": 5.0}),
    ]
    cmds = [o for o in h.observed if isinstance(o, CommandObserved)]
    assert [(c.status, c.expect) for c in cmds] == [
        ("succeeded", "succeeded"),
        ("succeeded", "succeeded"),
        ("rejected", "rejected"),
        ("rejected", "rejected"),
        ("rejected", "succeeded"),
        ("rejected", "succeeded"),
    ]
    assert script.unexpected == 2
    assert h.replays[0].limit == 3
    assert h.events[-1] == "prompt press the button"
    assert h.conditions == [{"loss_pct": 5.0}]


async def test_devices_without_telemetry_wait_in_wall_time() -> None:
    h = Host(telemetry=False)
    script = TrialScript(h.host())
    t = asyncio.get_running_loop().time()
    await script.wait(0.3)
    assert asyncio.get_running_loop().time() - t >= 0.29
    assert script.cursor == pytest.approx(1000.3)


async def test_a_command_to_a_role_nobody_has_fails_in_words() -> None:
    script = TrialScript(Host().host())
    with pytest.raises(StepFailed, match="no device has the trial role 'reference'"):
        await script.command("get_status", to="reference")


class Observing:
    def __init__(self) -> None:
        self.seen: list[Observation] = []
        self.added: list[tuple[str, float]] = []

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        self.added.append((subject, ts))

    def observe(self, obs: Observation) -> None:
        self.seen.append(obs)

    def result(self) -> EvaluationResult:
        return EvaluationResult(evaluator="x", subjects=[])


def _reading(ref: DeviceRef, ts: float, seq: int) -> Reading:
    return Reading(ref, "node", "s1", seq, ts, {"power": 10.0}, int(ts * 1e9) + 5_000_000)


def test_router_keeps_readings_that_run_ahead_for_the_next_window() -> None:
    router = ReadingRouter()
    ev = Observing()
    router.start(ev, {A: "v/a"})
    # An accelerated rig sends readings beyond the current step before the window exists.
    router(EdgeResult(readings=[_reading(A, t, i) for i, t in enumerate([5.0, 15.0, 25.0])]))
    router.advance(10.0)  # a wait up to 10: the reading at 5 no longer matters
    router.add_window(10.0, 20.0)
    got = [o for o in ev.seen if isinstance(o, ReadingObserved)]
    assert [(o.ts, o.seq, o.received_at) for o in got] == [(15.0, 1, pytest.approx(15.005))]
    router.add_window(20.0, 30.0)
    got = [o for o in ev.seen if isinstance(o, ReadingObserved)]
    assert [o.ts for o in got] == [15.0, 25.0]
    assert ev.added == []  # an observing evaluator gets readings as observations only


def test_router_passes_presence_and_detections_of_the_runs_devices_only() -> None:
    router = ReadingRouter()
    ev = Observing()
    router.start(ev, {A: "v/a"})
    det = Detections(seq=1, ts=1_800_000_000.0, frame="r.1", objects=[])
    router(
        EdgeResult(
            presence=[
                PresenceChange(A, "lost", "s1", 2_000_000_000, 1_800_000_001.0),
                PresenceChange(B, "lost", "s9", 2_000_000_000),
                PresenceChange(A, "manifest", "s1", 2_000_000_000),
            ],
            detections=[DetectionEvent(A, det, 3_000_000_000), DetectionEvent(B, det, 1)],
        )
    )
    pres = [o for o in ev.seen if isinstance(o, PresenceObserved)]
    dets = [o for o in ev.seen if isinstance(o, DetectionsObserved)]
    assert [(p.subject, p.state, p.at, p.ts) for p in pres] == [
        ("v/a", "lost", 2.0, 1_800_000_001.0)
    ]
    assert [(d.subject, d.frame, d.received_at) for d in dets] == [("v/a", "r.1", 3.0)]


PY_TRIAL = '''
SPEC = {
    "trial": "curve",
    "title": "finer sweep",
    "kind": "command-response",
    "devices": {"nodes": {"role": "dut", "channel": "power"}},
    "criteria": {"success_rate": {"min": 0.9}},
}

async def run(trial):
    for level in (0, 50, 100):
        await trial.command("set_level", {"level": level})
        await trial.measure(5)
'''


async def test_python_trial_files_use_the_same_api(tmp_path: Path) -> None:
    path = tmp_path / "curve.py"
    path.write_text(PY_TRIAL)
    loaded = load_spec(path, known_kinds={"command-response"})
    assert loaded.script is not None and loaded.spec.phases is None
    h = Host()
    await loaded.script(TrialScript(h.host()))
    assert [p["level"] for _, _, p in h.commands.sent] == [0, 0, 50, 50, 100, 100]
    assert h.windows == [(1000.0, 1005.0), (1005.0, 1010.0), (1010.0, 1015.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SPEC = {'trial': 'x'}\nasync def run(t): pass\n", "SPEC.title: Field required"),
        ("SPEC = 3\n", "defines SPEC = "),
        (PY_TRIAL.split("async def")[0] + "def run(t): pass\n", "'async def run(trial)'"),
        (PY_TRIAL.replace("trial.measure", "trial.measure("), "curve.py:13: SyntaxError"),
        ("x = 1\nraise RuntimeError('boom')\n", "curve.py:2: RuntimeError: boom"),
    ],
)
def test_bad_python_trials_are_explained(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "curve.py"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path, known_kinds={"command-response"})
    assert message in str(err.value)


def test_a_yaml_spec_needs_a_duration_or_a_script() -> None:
    text = YAML.split("phases:")[0]
    with pytest.raises(SpecError, match="give 'duration'"):
        parse_spec(text, Path("lamp.yaml"))


def test_command_client_is_what_the_host_expects() -> None:
    # The fake above stands in for CommandClient.send: keep their signatures in step.
    import inspect

    real = inspect.signature(CommandClient.send).parameters
    assert {"device", "op", "params", "timeout_s"} <= set(real)


async def test_measuring_starts_where_the_script_is_not_where_the_devices_are() -> None:
    # An accelerated rig runs ahead of the script during preflight: the first window still
    # starts at the trial's start, and readings already in it are replayed (router).
    h = Host()
    script = TrialScript(h.host())
    h.now = 50_000.0
    await script.measure(30)
    assert h.windows == [(1000.0, 1030.0)]
    # After a command (which happens "now"), the next window starts at the devices' time.
    h.now = 60_000.0
    await script.command("get_status")
    await script.measure(10)
    assert h.windows[-1] == (60_000.0, 60_010.0)
