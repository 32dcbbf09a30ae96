"""Re-evaluate a recorded run from its spool against a (revised) spec, without the devices.

The run's telemetry is read back from the spool range its record names (never from a TSDB),
restricted to the devices that took part and to the measured windows, and fed to a fresh
evaluator built from the new spec. The outcome is a new, immutable run record whose
``rescored_from`` names the recorded run; the original record is not touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl import __version__
from labctl.cli.exit_codes import ExitCode
from labctl.evaluators.base import Evaluator, EvaluatorFactory, ObservingEvaluator, Subject
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.replay import OtherPoint, ReplayError, Sample, samples
from labctl.metrics.spool import SpoolPosition
from labctl.store.records import Counters, RunRecord, SpecRef
from labctl.trial.runner import new_run_id
from labctl.trial.spec import LoadedSpec


class RescoreError(Exception):
    """A run cannot be re-scored; the message says why in words."""


def subjects_of(record: RunRecord) -> list[Subject]:
    """The evaluator's subjects, as the devices took part in ``record``."""
    return [
        Subject(
            key=d.key,
            role=d.role,
            vendor=d.vendor,
            device=d.device,
            model=d.model,
            interval_s=d.interval_s,
        )
        for d in record.devices
    ]


def windows_of(record: RunRecord) -> list[tuple[float, float]]:
    """The measured device-time windows of a run (older records: the one ``device_time``)."""
    if record.windows is not None:
        return list(record.windows)
    return [record.device_time] if record.device_time is not None else []


def data_run(record: RunRecord) -> str:
    """The id the run's telemetry is tagged with in the spool."""
    return record.rescored_from or record.id


def recorded_samples(record: RunRecord, others: list[OtherPoint] | None = None) -> Iterator[Sample]:
    """The run's telemetry from the spool, in spooled order. Raises RescoreError in words."""
    if record.spool is None:
        raise RescoreError(
            f"run {record.id} has no recorded spool range (status {record.status}: "
            f"{record.message or 'it ended before recording data'})"
        )
    sp = record.spool
    try:
        yield from samples(
            Path(sp.directory),
            SpoolPosition(*sp.start),
            SpoolPosition(*sp.end),
            data_run(record),
            others,
        )
    except ReplayError as exc:
        raise RescoreError(f"cannot re-read run {record.id}: {exc}") from exc


@dataclass
class Replayed:
    """What feeding a run's recorded samples into an evaluator gave."""

    evaluator: Evaluator
    evaluated: int
    """Samples that fell in the measured windows and were fed to the evaluator."""


def replay_into(
    record: RunRecord,
    evaluator: Evaluator,
    *,
    on_sample: Callable[[Sample], None] | None = None,
    others: list[OtherPoint] | None = None,
) -> Replayed:
    """Feed the run's recorded samples of its devices within its windows to ``evaluator``.

    ``on_sample`` sees every sample of the run's devices (also outside the windows).
    """
    keys = {d.key for d in record.devices}
    windows = windows_of(record)
    evaluated = 0
    for s in recorded_samples(record, others):
        if s.device not in keys:
            continue
        if on_sample is not None:
            on_sample(s)
        for lo, hi in windows:
            if lo <= s.ts < hi:
                evaluator.add(s.device, s.ts, s.values)
                evaluated += 1
                break
    return Replayed(evaluator, evaluated)


def build_evaluator(
    factory: type[EvaluatorFactory], loaded: LoadedSpec, record: RunRecord
) -> Evaluator:
    """A fresh evaluator for ``loaded`` judging the devices of ``record``."""
    try:
        return factory.from_spec(loaded.spec, subjects_of(record))
    except ValueError as exc:
        raise RescoreError(
            f"the spec {loaded.path} cannot judge the devices of run {record.id}: {exc}"
        ) from exc


def rescore(
    record: RunRecord, loaded: LoadedSpec, factory: type[EvaluatorFactory], data_dir: Path
) -> RunRecord:
    """A new final record: ``record``'s recorded data judged by ``loaded``.

    The spec's evaluator must be the one the run was recorded for. Writes the spec text next
    to the new run's data (``runs/{id}/spec.yaml``), as ``labctl run`` does.
    """
    if record.spool is None or not record.devices:
        raise RescoreError(
            f"run {record.id} recorded no data to re-score (status {record.status}"
            + (f": {record.message}" if record.message else "")
            + ")"
        )
    if loaded.spec.kind != record.kind:
        raise RescoreError(
            f"run {record.id} was judged by {record.kind!r}; the spec {loaded.path} asks for "
            f"{loaded.spec.kind!r}, which cannot read the same recording"
        )
    started = time.time()
    evaluator = build_evaluator(factory, loaded, record)
    if isinstance(evaluator, ObservingEvaluator):
        raise RescoreError(
            f"{record.kind} judges what run {record.id} observed (commands, presence, frames); "
            "the spool keeps readings only, so it cannot be re-scored from the spool"
        )
    replayed = replay_into(record, evaluator)
    evaluation: EvaluationResult = evaluator.result()
    run_id = new_run_id()
    run_dir = data_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.yaml").write_text(loaded.text)
    source = data_run(record)
    note = f"re-scored from the spooled data of run {source}"
    if record.rescored_from:
        note += f" (via re-score {record.id})"
    return RunRecord(
        id=run_id,
        trial=loaded.spec.trial,
        title=loaded.spec.title,
        kind=record.kind,
        rig=record.rig,
        spec=SpecRef(path=str(loaded.path), sha256=loaded.sha256),
        status="passed" if evaluation.passed else "failed",
        exit_code=int(ExitCode.PASS if evaluation.passed else ExitCode.FAIL),
        started_at=started,
        ended_at=time.time(),
        device_time=record.device_time,
        windows=windows_of(record),
        devices=list(record.devices),
        evaluation=evaluation,
        counters=Counters(
            readings=record.counters.readings,
            readings_evaluated=replayed.evaluated,
            duplicates=record.counters.duplicates,
            rejected=dict(record.counters.rejected),
        ),
        spool=record.spool,
        sinks=[],
        message=note,
        labctl_version=__version__,
        data_dir=str(data_dir),
        rescored_from=source,
    )
