"""The evaluator plugin interface.

An evaluator consumes readings as a stream and yields an :class:`EvaluationResult`. It knows
nothing of MQTT, devices or storage: the runner adapts readings into :meth:`Evaluator.add`
calls, and ``labctl eval`` does the same from files. Evaluators register through the
``labctl.evaluators`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from labctl.evaluators.result import EvaluationResult
from labctl.observations import Observation
from labctl.plugins import PluginRegistry
from labctl.trial.spec import TrialSpec


@dataclass(frozen=True, slots=True)
class Subject:
    """One data source an evaluator judges or compares against."""

    key: str
    """Stable name, e.g. ``vendor/device`` or a file name."""
    role: str
    """The trial role: ``reference``, ``dut``, …"""
    vendor: str = ""
    device: str = ""
    model: str = ""
    interval_s: float | None = None
    """Nominal sampling interval (from the manifest's rate); None: infer from the data."""


class Evaluator(Protocol):
    """A streaming evaluator for one trial."""

    def add(self, subject: str, ts: float, values: Mapping[str, float]) -> None:
        """Take one sample of ``subject`` at device time ``ts`` (epoch seconds)."""

    def result(self) -> EvaluationResult:
        """Compute every metric, criterion outcome, breakdown and limitation so far."""


@runtime_checkable
class ObservingEvaluator(Evaluator, Protocol):
    """An evaluator that also judges what is not a reading (commands, presence, frames and
    detections). The runner gives it every observation, and readings of measured windows as
    :class:`~labctl.observations.ReadingObserved` instead of :meth:`Evaluator.add` calls."""

    def observe(self, obs: Observation) -> None:
        """Take one observation, in arrival order."""


class EvaluatorFactory(Protocol):
    """What the ``labctl.evaluators`` entry point names."""

    name: ClassVar[str]

    @classmethod
    def from_spec(cls, spec: TrialSpec, subjects: Sequence[Subject]) -> Evaluator:
        """Build an evaluator for ``spec`` judging ``subjects``."""
        ...


ENTRY_POINT_GROUP = "labctl.evaluators"


def evaluator_registry() -> PluginRegistry[type[EvaluatorFactory]]:
    """Every evaluator installed in the environment."""
    return PluginRegistry[type[EvaluatorFactory]]("evaluator").load(ENTRY_POINT_GROUP)
