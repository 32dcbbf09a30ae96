"""The runner API a trial's steps use: YAML steps and Python trial files call the same methods.

A YAML phase is a list of steps (``wait``, ``measure``, ``command``, ``stimulus``, ``prompt``);
:func:`run_steps` turns each into one call on :class:`TrialScript`. A Python trial file gets
the same object and calls it directly::

    async def run(trial: TrialScript) -> None:
        for level in range(0, 101, 5):
            await trial.command("set_level", {"level": level}, settle=2)
            await trial.measure(10)

Time: ``wait`` and ``measure`` count device time (accelerated on a simulated rig) as the
devices' readings show it; devices that send no telemetry (e.g. a camera AI box) count wall
time. Commands and prompts happen "now"; the device-time cursor then moves to the devices'
current time, so a measurement after a command never starts before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.commands import CommandClient, CommandOutcome
from labctl.observations import CommandObserved, Observation, WindowObserved
from labctl.readings import DeviceRef
from labctl.trial.spec import (
    CommandStep,
    LiveStep,
    LiveStimulus,
    MeasureStep,
    Phase,
    PromptStep,
    ReplayStep,
    ReplayStimulus,
    SetConditions,
    StimulusStep,
    WaitStep,
)


class StepFailed(RuntimeError):
    """A step cannot be carried out (e.g. no device has the role it names)."""


async def _no_live(stim: LiveStimulus) -> None:
    raise StepFailed("this rig cannot present live camera frames")


@dataclass
class ScriptHost:
    """What the runner lends the script: clocks, devices, the command client, the stimulus
    and conditions hooks. Plain callables so the script can be tested with fakes."""

    devices: Mapping[str, Sequence[DeviceRef]]
    """Selected devices by trial role."""
    commands: CommandClient
    observe: Callable[[Observation], None]
    """Hands an observation to the evaluator."""
    until_device_time: Callable[[float], Awaitable[None]]
    device_now: Callable[[], float | None]
    """The devices' current time (None when none of them sends telemetry)."""
    add_window: Callable[[float, float], None]
    advance: Callable[[float], None]
    """No measurement will start before this device time any more (drops early readings)."""
    set_phase: Callable[[str], None]
    event: Callable[[str], None]
    check: Callable[[], None]
    """Raises when the run must stop (Ctrl-C, a dead simulator)."""
    replay: Callable[[ReplayStimulus], Awaitable[None]]
    apply_conditions: Callable[[Mapping[str, float]], Awaitable[str]]
    """Sets conditions on the rig; returns how (``netem``, ``simulator``, …) for the record."""
    prompt: Callable[[str, float | None], Awaitable[None]]
    start: float
    """Device time at which the script starts."""
    live: Callable[[LiveStimulus], Awaitable[None]] = _no_live
    """Presents what a lab camera sees (see ``labctl.trial.live``)."""


@dataclass
class TrialScript:
    """The runner API. One instance per run."""

    host: ScriptHost
    cursor: float = 0.0
    """Device time up to which the script has waited or measured."""
    conditions: dict[str, float] = field(default_factory=dict)
    outcomes: list[CommandObserved] = field(default_factory=list)
    unexpected: int = 0
    """Commands whose answer was not the one the step expected."""
    condition_methods: set[str] = field(default_factory=set)
    phase: str = "script"

    def __post_init__(self) -> None:
        self.cursor = self.host.start

    # -- queries ------------------------------------------------------------------------------

    def devices(self, role: str = "dut") -> list[DeviceRef]:
        """The devices selected for ``role``."""
        return list(self.host.devices.get(role, ()))

    def in_phase(self, name: str) -> None:
        """Name what follows (progress display, window observations)."""
        self.phase = name
        self.host.set_phase(name)

    # -- steps --------------------------------------------------------------------------------

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (wall time for devices without telemetry)."""
        self.host.check()
        end = self.cursor + seconds
        self.host.advance(end)
        await self._until(end, seconds)
        self.cursor = end

    async def measure(self, seconds: float) -> None:
        """Record and evaluate ``seconds`` of device time."""
        self.host.check()
        lo, hi = self.cursor, self.cursor + seconds
        self.host.add_window(lo, hi)
        conditions = dict(self.conditions)
        self.host.observe(WindowObserved("start", self.phase, lo, time.time(), conditions))
        await self._until(hi, seconds)
        self.host.observe(WindowObserved("end", self.phase, hi, time.time(), conditions))
        self.cursor = hi

    async def command(
        self,
        op: str,
        params: Mapping[str, Any] | None = None,
        *,
        to: str = "dut",
        expect: str = "succeeded",
        timeout: float = 5.0,  # noqa: ASYNC109 - the device's deadline, as in the YAML step
        settle: float | None = None,
    ) -> list[CommandOutcome]:
        """Send ``op`` to every device of role ``to`` at once; wait for each final answer or
        its deadline; record each outcome. A different answer than ``expect`` is recorded and
        counted, not fatal: judging it is the evaluator's job."""
        self.host.check()
        targets = self.devices(to)
        if not targets:
            raise StepFailed(f"command {op}: no device has the trial role {to!r}")
        args = dict(params or {})
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.host.commands.send(ref, op, args, timeout_s=timeout))
                for ref in targets
            ]
        outcomes = [t.result() for t in tasks]
        for ref, out in zip(targets, outcomes, strict=True):
            obs = CommandObserved(
                subject=ref.key,
                command_id=out.id,
                op=op,
                params=args,
                status=out.status,
                accepted=out.accepted,
                published_at=out.published_at,
                finished_at=out.finished_at,
                deadline_s=timeout,
                expect=expect,
                error=out.error,
                result=out.result,
            )
            self.outcomes.append(obs)
            self.host.observe(obs)
            if out.status != expect:
                self.unexpected += 1
                why = f" ({out.error})" if out.error else ""
                self.host.event(f"{ref.key}: {op} {args} → {out.status}{why}, expected {expect}")
        if settle:
            await asyncio.sleep(settle)
        self._catch_up()
        return outcomes

    async def set_conditions(self, **conditions: float) -> None:
        """Set rig conditions (network loss/delay, …) for the following steps."""
        self.host.check()
        method = await self.host.apply_conditions(conditions)
        self.condition_methods.add(method)
        self.conditions.update(conditions)
        shown = ", ".join(f"{k}={v:g}" for k, v in conditions.items())
        self.host.event(f"conditions set ({method}): {shown}")
        self._catch_up()  # what the devices sent until now was under the old conditions

    async def replay(self, stimulus: ReplayStimulus | None = None, **kwargs: Any) -> None:
        """Present the dataset's frames to the devices under test (see ``ReplayStimulus``)."""
        self.host.check()
        await self.host.replay(stimulus or ReplayStimulus(**kwargs))
        self._catch_up()

    async def live(self, stimulus: LiveStimulus | None = None, **kwargs: Any) -> None:
        """Present a lab camera's annotated frames to the devices under test (see
        ``LiveStimulus``), e.g. ``await trial.live(camera="0", annotations="street.json",
        frames=200)``."""
        self.host.check()
        await self.host.live(stimulus or LiveStimulus(**kwargs))
        self._catch_up()

    async def prompt(self, text: str, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Ask the operator to do something physical and wait for the confirmation."""
        self.host.check()
        await self.host.prompt(text, timeout)
        self._catch_up()

    # -- helpers ------------------------------------------------------------------------------

    def _catch_up(self) -> None:
        now = self.host.device_now()
        if now is not None and now > self.cursor:
            self.cursor = now

    async def _until(self, end: float, seconds: float) -> None:
        if self.host.device_now() is None:
            # No telemetry to tell device time by: wall time, in small slices so Ctrl-C works.
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                self.host.check()
                await asyncio.sleep(min(left, 0.1))
            return
        await self.host.until_device_time(end)


async def run_steps(script: TrialScript, phases: Sequence[Phase]) -> None:
    """Carry out a YAML script, step by step."""
    for phase in phases:
        script.in_phase(phase.name)
        for step in phase.steps:
            await run_step(script, step)


async def run_step(
    script: TrialScript,
    step: WaitStep | MeasureStep | CommandStep | StimulusStep | PromptStep,
) -> None:
    """One YAML step as one call on the runner API."""
    if isinstance(step, WaitStep):
        await script.wait(step.wait)
    elif isinstance(step, MeasureStep):
        await script.measure(step.measure)
    elif isinstance(step, CommandStep):
        c = step.command
        await script.command(
            c.op, c.params, to=c.to, expect=c.expect, timeout=c.timeout, settle=c.settle
        )
    elif isinstance(step, StimulusStep):
        stim = step.stimulus
        if isinstance(stim, ReplayStep):
            await script.replay(stim.replay)
        elif isinstance(stim, LiveStep):
            await script.live(stim.live)
        else:
            assert isinstance(stim, SetConditions)
            await script.set_conditions(**stim.set)
    else:
        await script.prompt(step.prompt, step.timeout)
