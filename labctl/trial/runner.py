"""The trial runner: validate → infrastructure → preflight → phases → teardown → evaluate →
record.

Teardown always runs. Ctrl-C asks the runner to stop (an :class:`asyncio.Event`, not a task
cancellation, so teardown is never interrupted half-way) and the run is recorded as
``aborted``; a broken rig is recorded as ``faulted``. Every outcome ends in exactly one final,
immutable run record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from labctl import __version__
from labctl.bus.broker import BrokerError
from labctl.bus.edge import Edge
from labctl.bus.mqtt import BusError
from labctl.cli.exit_codes import ExitCode
from labctl.config import Settings
from labctl.controller import Controller, ControllerFault
from labctl.evaluators.base import EvaluatorFactory
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.points import RunTags
from labctl.metrics.replay import range_checksums
from labctl.metrics.spool import SpoolError, SpoolPosition
from labctl.readings import DeviceRef
from labctl.rig.directory import DeviceDirectory
from labctl.rig.reservations import RIG, DeviceBusy, Holder, Reservations
from labctl.rig.runtime import RigRuntime, open_runtime
from labctl.rig.simulated import SimulatedRig, SimulatorError
from labctl.serialio.rig import SerialRig, SerialRigError
from labctl.store.records import (
    Counters,
    DeviceInRun,
    RunRecord,
    RunStatus,
    SinkOutcome,
    SpecRef,
    SpoolRange,
)
from labctl.store.runs import RunStore
from labctl.trial.conditions import ConditionError, RigConditions
from labctl.trial.datasets import DatasetError, resolve_dataset
from labctl.trial.live import LiveError, present_live
from labctl.trial.replay import FramePresenter, ReplayError
from labctl.trial.router import ReadingRouter
from labctl.trial.script import ScriptHost, StepFailed, TrialScript, run_steps
from labctl.trial.selection import Selected, describe_directory, select_devices
from labctl.trial.spec import LiveStimulus, LoadedSpec, MeasureStep, ReplayStimulus, WaitStep

log = logging.getLogger(__name__)


PREFLIGHT_SETTLE_S = 1.0
"""How long the selected devices must stay the same before a trial starts."""


class RigFault(RuntimeError):
    """The rig cannot run the trial; the message says why in words."""


class Aborted(Exception):
    """The operator stopped the run."""


@dataclass(frozen=True)
class Progress:
    """What the progress display shows."""

    phase: str
    device_elapsed_s: float
    device_total_s: float
    readings: int
    readings_per_s: float
    rejected: int
    duplicates: int


def new_run_id() -> str:
    """Sortable, readable and unique enough for one lab: ``20261121-203045-a1b2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class TrialRunner:
    """Runs one trial spec on the configured rig and records the outcome."""

    def __init__(
        self,
        settings: Settings,
        loaded: LoadedSpec,
        evaluator_factory: type[EvaluatorFactory],
        store: RunStore,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        preflight_timeout_s: float = 30.0,
        wait: bool = True,
        on_prompt: Callable[[str, float | None], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.loaded = loaded
        self.spec = loaded.spec
        self.factory = evaluator_factory
        self.store = store
        self.on_progress = on_progress or (lambda p: None)
        self.on_event = on_event or (lambda s: None)
        self.preflight_timeout_s = preflight_timeout_s
        self.abort = asyncio.Event()
        self.wait = wait
        self.on_prompt = on_prompt
        sim = settings.rig.sim
        speed = self.spec.speed or sim.speed
        self.sim_settings = sim.model_copy(
            update={
                "speed": speed,
                "preset": self.spec.preset or sim.preset,
                # In real time the device clock is the wall clock, so latencies mean something.
                "start": datetime.now(UTC).isoformat() if speed == 1 else sim.start,
            }
        )
        self.script: TrialScript | None = None
        self.dataset: Path | None = None
        self._conditions: RigConditions | None = None
        self.run_id = new_run_id()
        self.run_dir = settings.data_dir / "runs" / self.run_id
        self._router = ReadingRouter()
        self._phase = "starting"
        self._selected: list[Selected] = []
        self._device_total = self._total_device_time()
        self._device_done = 0.0
        self._rate = (time.monotonic(), 0, 0.0)
        self._edge: Edge | None = None
        self._serial: SerialRig | None = None
        self._rt: RigRuntime | None = None
        self._t0 = 0.0
        self._live_steps = 0

    def current_evaluation(self) -> EvaluationResult | None:
        """The evaluator's answer on the data measured so far (for live views); None before
        measuring starts. Costs a full evaluation: callers throttle it."""
        evaluator = self._router.evaluator
        return evaluator.result() if evaluator is not None else None

    def _total_device_time(self) -> float:
        if self.spec.phases is None:
            return self.spec.duration or 0.0
        total = 0.0
        for phase in self.spec.phases:
            for step in phase.steps:
                if isinstance(step, WaitStep):
                    total += step.wait
                elif isinstance(step, MeasureStep):
                    total += step.measure
        return total

    # -- the run ---------------------------------------------------------------------------

    async def run(self, runtime: RigRuntime | None = None) -> RunRecord:
        """Run the trial; always returns the final record (also when aborted or faulted).

        Without ``runtime`` the run opens its own (``labctl run``); ``labctl serve`` passes the
        runtime it keeps open, shared with other runs.
        """
        started = time.time()
        spec = self.spec
        base = dict(
            id=self.run_id,
            trial=spec.trial,
            title=spec.title,
            kind=spec.kind,
            rig=self.settings.rig.name,
            spec=SpecRef(path=str(self.loaded.path), sha256=self.loaded.sha256),
            labctl_version=__version__,
            data_dir=str(self.settings.data_dir),
        )
        self.store.start(
            RunRecord(**base, status="running", exit_code=-1, started_at=started, ended_at=started)
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "spec.yaml").write_text(self.loaded.text)
        status: RunStatus = "error"
        message = ""
        evaluation: EvaluationResult | None = None
        extras: dict[str, object] = {}
        try:
            if runtime is None:
                self._event("starting the rig runtime (broker, spool, bus)")
                holder = Holder(self.run_id, spec.trial)
                async with open_runtime(self.settings, Reservations(default=holder)) as rt:
                    evaluation, extras = await self._on_runtime(rt)
            else:
                evaluation, extras = await self._on_runtime(runtime)
            status = "passed" if evaluation.passed else "failed"
        except* (
            RigFault,
            BusError,
            BrokerError,
            SimulatorError,
            ControllerFault,
            SpoolError,
            DeviceBusy,
            SerialRigError,
            ReplayError,
            LiveError,
            ConditionError,
            DatasetError,
            StepFailed,
            OSError,
        ) as eg:
            status = "faulted"
            message = "; ".join(str(e) for e in eg.exceptions)
        except* Aborted:
            # Checked after faults so that a Ctrl-C during a fault still reads as aborted.
            status, message = "aborted", "stopped by the operator (Ctrl-C); teardown done"
        except* Exception as eg:
            log.exception("run %s ended with an internal error", self.run_id)
            status = "error"
            message = "; ".join(f"{type(e).__name__}: {e}" for e in eg.exceptions)
        code = {
            "passed": ExitCode.PASS,
            "failed": ExitCode.FAIL,
            "aborted": ExitCode.ABORTED,
            "faulted": ExitCode.RIG_FAULT,
        }.get(status, ExitCode.RIG_FAULT)
        record = RunRecord(
            **base,
            status=status,
            exit_code=int(code),
            started_at=started,
            ended_at=time.time(),
            evaluation=evaluation,
            message=message,
            **extras,
        )
        self.store.finish(record)
        return record

    async def _on_runtime(self, rt: RigRuntime) -> tuple[EvaluationResult, dict[str, object]]:
        s = self.settings
        self._rt = rt
        self._edge = rt.edge
        tags = RunTags(self.run_id, self.spec.trial)
        holder = Holder(self.run_id, self.spec.trial)
        spool_start = rt.spool.position()
        rt.controller.listeners.append(self._router)
        sim: SimulatedRig | None = None
        try:
            async with AsyncExitStack() as stack:
                self.spec, self.dataset = await resolve_dataset(
                    self.spec, self.loaded.path, self.run_dir, self._event
                )
                if s.rig.simulated:
                    # A simulated rig is one resource: its devices come and go with the run.
                    await rt.reservations.reserve(holder, [RIG], wait=self.wait)
                    sim = SimulatedRig(
                        self.sim_settings,
                        rt.host,
                        rt.port,
                        self.run_dir / "sim-stats.json",
                        until_s=self._device_total + 7200,
                        log_file=self.run_dir / "sim.log",
                        register=self.dataset,
                    )
                    stack.push_async_callback(sim.stop)
                if sim is not None:
                    # The simulator's serial ptys live and die with it; configured serial
                    # devices are the runtime's (see open_runtime). Both join via accept_local.
                    self._serial = SerialRig(rt.directory, rt.controller.accept_local, self._event)
                    await stack.enter_async_context(self._serial.running([], sim.serial_ports))
                try:
                    evaluation = await self._trial(rt, sim, holder)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._teardown(rt.controller, rt.directory, sim))
        finally:
            rt.controller.listeners.remove(self._router)
            if sys.exc_info()[0] is not None:  # a failed run must not keep its devices
                await asyncio.shield(rt.reservations.release(self.run_id))
        # From here on, new readings are no longer this run's: release the devices (and, for
        # a run-owned runtime, stop tagging by default), then count what the run got.
        await rt.reservations.release(self.run_id)
        if rt.reservations.default.run == self.run_id:
            rt.reservations.default = Holder("", "")
        readings = rt.controller.run_counts.pop(self.run_id, 0)
        now = time.time_ns()
        roles = {x.ref.key: x.role for x in self._selected}
        end_text = rt.encoder.verdict(evaluation, roles, now, tags)
        end_text += rt.encoder.event(
            "run", "verdict", "pass" if evaluation.passed else "fail", now, tags
        )
        spool_end = await rt.controller.append_points(end_text)
        self._set_phase("draining to TSDB")
        outcomes = await self._drain(rt.controller, spool_end)
        extras: dict[str, object] = {
            "devices": self._devices(rt.directory),
            "counters": Counters(
                readings=readings,
                readings_evaluated=self._router.evaluated,
                duplicates=rt.edge.counters.duplicates,
                rejected=dict(rt.edge.counters.rejected),
            ),
            "spool": SpoolRange(
                directory=str(s.spool_dir),
                start=(spool_start.segment, spool_start.offset),
                end=(spool_end.segment, spool_end.offset),
                segments=await asyncio.to_thread(
                    range_checksums,
                    s.spool_dir,
                    (spool_start.segment, spool_start.offset),
                    (spool_end.segment, spool_end.offset),
                ),
            ),
            "sinks": outcomes,
            "device_time": self._window_span(),
            "windows": list(self._router.windows),
        }
        return evaluation, extras

    async def _trial(
        self, rt: RigRuntime, sim: SimulatedRig | None, holder: Holder
    ) -> EvaluationResult:
        directory = rt.directory
        if sim is not None:
            self._event("starting the simulated rig")
            await sim.start()
        self._set_phase("preflight")
        self._selected = await self._preflight(directory, sim)
        await rt.reservations.reserve(holder, [x.ref.key for x in self._selected], wait=self.wait)
        subjects = [x.subject() for x in self._selected]
        try:
            evaluator = self.factory.from_spec(self.spec, subjects)
        except ValueError as exc:
            raise RigFault(f"the evaluator cannot judge these devices: {exc}") from exc
        if sim is not None:
            t0 = _epoch(self.sim_settings.start)
        else:
            latest = self._router.latest
            seen = [latest[x.ref] for x in self._selected if x.ref in latest]
            t0 = max(seen) if seen else time.time()
        self._t0 = t0
        script = TrialScript(self._script_host(rt, sim, t0))
        self.script = script
        self._router.start(evaluator, {x.ref: x.ref.key for x in self._selected})
        if self.loaded.script is not None:
            await self.loaded.script(script)
        elif self.spec.phases is None:
            script.in_phase("measure")
            await script.measure(self.spec.duration or 0.0)
        else:
            await run_steps(script, self.spec.phases)
        self._set_phase("evaluating")
        return evaluator.result()

    def _script_host(self, rt: RigRuntime, sim: SimulatedRig | None, t0: float) -> ScriptHost:
        by_role: dict[str, list[DeviceRef]] = {}
        for x in self._selected:
            by_role.setdefault(x.role, []).append(x.ref)
            by_role.setdefault(x.slot, []).append(x.ref)
        refs = [x.ref for x in self._selected]

        def device_now() -> float | None:
            seen = [self._router.latest[r] for r in refs if r in self._router.latest]
            return min(seen) if seen else None

        async def until(end: float) -> None:
            await self._until_device_time(rt.controller, sim, end)

        presenter = FramePresenter(
            rt.bus.publish,
            self._router.observe,
            rt.controller.listeners,
            [x.ref for x in self._selected if x.role == "dut"],
            self.run_id,
            self._event,
            lambda: self._check(sim),
        )
        conditioner = RigConditions(rt.bus.publish, self.settings.rig.name, sim is not None)
        self._conditions = conditioner
        return ScriptHost(
            devices=by_role,
            commands=rt.commands,
            observe=self._router.observe,
            until_device_time=until,
            device_now=device_now,
            add_window=self._router.add_window,
            advance=self._router.advance,
            set_phase=self._set_phase,
            event=self._event,
            check=lambda: self._check(sim),
            replay=lambda stim: presenter.present(self._dataset_for(stim), stim),
            apply_conditions=conditioner.apply,
            prompt=lambda text, timeout: self._prompt(text, timeout, sim),
            start=t0,
            live=lambda stim: self._live(presenter, stim),
        )

    async def _preflight(
        self, directory: DeviceDirectory, sim: SimulatedRig | None
    ) -> list[Selected]:
        deadline = time.monotonic() + self.preflight_timeout_s
        s = self.settings.rig
        # Devices come online one by one: the selection must hold still for a moment, or a
        # trial with `min: 1` would start with whichever device connected first.
        stable_since, last = time.monotonic(), frozenset[DeviceRef]()
        while True:
            self._check(sim)
            selected, problems = select_devices(self.spec, directory, s.roles, s.default_role)
            refs = frozenset(x.ref for x in selected)
            if refs != last:
                stable_since, last = time.monotonic(), refs
            if not problems and time.monotonic() - stable_since >= PREFLIGHT_SETTLE_S:
                names = ", ".join(f"{x.ref.key} ({x.role})" for x in selected)
                self._event(f"preflight passed: {names}")
                return selected
            if time.monotonic() > deadline:
                raise RigFault(
                    "preflight failed after "
                    f"{self.preflight_timeout_s:g} s: "
                    + "; ".join(problems)
                    + "\n"
                    + describe_directory(directory, s.roles, s.default_role)
                )
            await asyncio.sleep(0.1)

    async def _until_device_time(
        self, controller: Controller, sim: SimulatedRig | None, end: float
    ) -> None:
        """Wait until every selected device has produced its samples up to ``end``."""
        intervals = {x.ref: x.subject().interval_s or 1.0 for x in self._selected}
        speed = self.sim_settings.speed if sim is not None else 1.0
        stall_limit = 30.0 if sim is not None else max(300.0, 10 * max(intervals.values()))
        last_progress, last_min = time.monotonic(), -1.0
        while True:
            self._check(sim)
            if controller.fault:
                raise ControllerFault(controller.fault)
            latest = [self._router.latest.get(ref, 0.0) + intervals[ref] for ref in intervals]
            low = min(latest)
            self._device_done = max(0.0, min(low, end) - self._t0)
            self._report()
            if low >= end:
                return
            if low > last_min:
                last_min, last_progress = low, time.monotonic()
            elif time.monotonic() - last_progress > stall_limit:
                behind = [ref.key for ref, t in zip(intervals, latest, strict=True) if t < end]
                raise RigFault(
                    f"device time stopped advancing for {stall_limit:g} s (wall) at "
                    f"{datetime.fromtimestamp(low).isoformat()} on: {', '.join(behind)}"
                    f" (speed {speed:g}×)"
                )
            await asyncio.sleep(0.1)

    def _dataset_for(self, stim: ReplayStimulus) -> Path:
        if stim.dataset is not None:
            return (self.loaded.path.parent / stim.dataset).resolve()
        if self.dataset is None:
            raise ReplayError(
                "replay: no dataset; give 'dataset:' in the step or 'options: {dataset: …}' "
                "or 'options: {scenes: {…}}' in the spec"
            )
        return self.dataset

    async def _live(self, presenter: FramePresenter, stim: LiveStimulus) -> None:
        self._live_steps += 1
        n = self._live_steps
        await present_live(
            presenter,
            stim,
            spec_dir=self.loaded.path.parent,
            step=n,
            evidence_dir=self.run_dir / (f"live-{n}" if n > 1 else "live"),
        )

    async def _prompt(
        self, text: str, timeout: float | None, sim: SimulatedRig | None  # noqa: ASYNC109
    ) -> None:
        if sim is not None:
            self._event(f"operator prompt (simulated rig: nothing to do): {text}")
            return
        if self.on_prompt is None:
            raise StepFailed(f"this trial asks the operator to act, and nobody can answer: {text}")
        self._event(f"waiting for the operator: {text}")
        await self.on_prompt(text, timeout)

    async def _teardown(
        self, controller: Controller, directory: DeviceDirectory, sim: SimulatedRig | None
    ) -> None:
        """Stop the rig and take in what is still on the way. Always runs."""
        self._set_phase("teardown")
        if self._conditions is not None:
            await self._conditions.clear()
        if sim is not None:
            await sim.stop()
            # Devices publish 'offline' after their last telemetry; wait for it to arrive.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                recs = [directory.get(x.ref) for x in self._selected]
                if all(r is None or r.state != "online" for r in recs):
                    break
                await asyncio.sleep(0.05)
        await controller.quiet(0.3, 10)

    async def _drain(self, controller: Controller, end: SpoolPosition) -> list[SinkOutcome]:
        timeout = self.settings.metrics.drain_timeout_s
        outcomes = []
        for d in controller.drainers:
            caught_up = await d.drain_to(end, timeout)
            st = d.status()
            outcomes.append(
                SinkOutcome(
                    name=d.name,
                    points_written=st.points_written,
                    caught_up=caught_up,
                    last_error=st.last_error,
                )
            )
            if not caught_up:
                self._event(
                    f"TSDB {d.name} is behind ({st.last_error or 'slow'}); the rest "
                    "stays in the spool and drains on the next run"
                )
        return outcomes

    # -- helpers ---------------------------------------------------------------------------

    def _check(self, sim: SimulatedRig | None) -> None:
        if self.abort.is_set():
            raise Aborted
        if sim is not None:
            sim.check()
        if self._serial is not None:
            self._serial.check()
        if self._rt is not None and self._rt.serial is not None:
            self._rt.serial.check()

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        self._report()

    def _event(self, text: str) -> None:
        log.info("%s", text)
        self.on_event(text)

    def _report(self) -> None:
        now = time.monotonic()
        t, n, rate = self._rate
        if now - t >= 0.5:
            rate = (self._router.readings - n) / (now - t)
            self._rate = (now, self._router.readings, rate)
        self.on_progress(
            Progress(
                phase=self._phase,
                device_elapsed_s=self._device_done,
                device_total_s=self._device_total,
                readings=self._router.readings,
                readings_per_s=rate,
                rejected=self._edge.counters.rejected_total if self._edge else 0,
                duplicates=self._edge.counters.duplicates if self._edge else 0,
            )
        )

    def _window_span(self) -> tuple[float, float] | None:
        w = self._router.windows
        return (min(a for a, _ in w), max(b for _, b in w)) if w else None

    def _devices(self, directory: DeviceDirectory) -> list[DeviceInRun]:
        out = []
        for x in self._selected:
            rec = directory.get(x.ref)
            m = x.manifest
            out.append(
                DeviceInRun(
                    key=x.ref.key,
                    vendor=x.ref.vendor,
                    device=x.ref.device,
                    role=x.role,
                    model=m.device.model,
                    serial=m.device.serial,
                    hw_version=m.device.hw_version,
                    sw_version=m.device.sw_version,
                    manifest_version=m.version,
                    session=m.session,
                    readings=rec.readings if rec else 0,
                    rejected=rec.rejected if rec else 0,
                    interval_s=x.subject().interval_s,
                )
            )
        return out
