"""Everything a report needs beyond the run record, gathered in one pass over the spool:
the spec text it ran, the evaluator re-fed with the run's samples (for plots), data quality,
rejected-message details and the state of the spool segments."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labctl.evaluators.base import Evaluator, EvaluatorFactory, ObservingEvaluator
from labctl.evaluators.result import EvaluationResult
from labctl.metrics.replay import OtherPoint, segment_status
from labctl.plugins import PluginError, PluginRegistry
from labctl.report.quality import DeviceQuality, QualityCollector
from labctl.rescore import RescoreError, replay_into, subjects_of, windows_of
from labctl.store.records import RunRecord
from labctl.trial.spec import SpecError, TrialSpec, parse_spec


@dataclass
class ReportInputs:
    """A run record and what was read back for its report."""

    record: RunRecord
    spec_text: str | None = None
    spec: TrialSpec | None = None
    spec_note: str = ""
    """Where the spec text came from, or why it is missing."""
    evaluator: Evaluator | None = None
    replay_note: str = ""
    """Why the spool could not be read back (empty when it was)."""
    reproduced: bool | None = None
    """True when re-evaluating the spooled data gives the recorded evaluation exactly."""
    quality: list[DeviceQuality] = field(default_factory=list)
    other_points: list[OtherPoint] = field(default_factory=list)
    segments_now: dict[str, str] = field(default_factory=dict)


def run_dir(record: RunRecord) -> Path:
    """Where ``labctl run`` (or ``labctl rescore``) kept the run's own files."""
    return Path(record.data_dir) / "runs" / record.id


def _spec_text(record: RunRecord) -> tuple[str | None, str]:
    for path, what in (
        (run_dir(record) / "spec.yaml", "the copy stored with the run"),
        (Path(record.spec.path), "the spec file"),
    ):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if hashlib.sha256(text.encode("utf-8")).hexdigest() == record.spec.sha256:
            return text, f"{what} ({path}); its SHA-256 matches the run record"
    return None, (
        "no spec text with the recorded SHA-256 was found (neither the copy stored with the "
        "run nor the spec file); plots and re-evaluation are not available"
    )


def gather(record: RunRecord, evaluators: PluginRegistry[type[EvaluatorFactory]]) -> ReportInputs:
    """Read back what the report of ``record`` needs; never raises for missing data (the
    report says what is missing instead)."""
    inputs = ReportInputs(record=record)
    inputs.spec_text, inputs.spec_note = _spec_text(record)
    if inputs.spec_text is not None:
        try:
            inputs.spec = parse_spec(inputs.spec_text, Path(record.spec.path)).spec
        except SpecError as exc:
            inputs.spec_note += f"; it no longer validates: {exc}"
    if record.spool is not None:
        inputs.segments_now = segment_status(
            Path(record.spool.directory),
            record.spool.segments,
            record.spool.start,
            record.spool.end,
        )
    if record.spool is None or not record.devices:
        inputs.replay_note = "the run recorded no data range in the spool"
        return inputs
    evaluator: Evaluator | None = None
    if inputs.spec is not None and record.evaluation is not None:
        try:
            factory = evaluators.get(record.kind)
            evaluator = factory.from_spec(inputs.spec, subjects_of(record))
        except (PluginError, ValueError) as exc:
            inputs.replay_note = f"the evaluator cannot be rebuilt: {exc}"
        if isinstance(evaluator, ObservingEvaluator):
            # It judges commands, presence or frames as well as readings; the spool keeps the
            # readings only, so a replay could not give the recorded answer.
            inputs.replay_note = (
                f"{record.kind} judges what the run observed (commands, presence, frames), "
                "not only the spooled readings"
            )
            evaluator = None
    collector = QualityCollector(windows_of(record), {d.key: d.interval_s for d in record.devices})
    sink = evaluator if evaluator is not None else _Discard()
    try:
        replay_into(record, sink, on_sample=collector.add, others=inputs.other_points)
    except RescoreError as exc:
        inputs.replay_note = str(exc)
        return inputs
    inputs.quality = collector.result()
    if evaluator is not None:
        inputs.evaluator = evaluator
        inputs.reproduced = evaluator.result() == record.evaluation
    return inputs


class _Discard:
    """An evaluator that ignores samples (when only data quality is wanted)."""

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Ignore the sample."""

    def result(self) -> EvaluationResult:
        """An empty result."""
        return EvaluationResult(evaluator="none", subjects=[])
