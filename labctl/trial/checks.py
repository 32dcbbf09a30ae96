"""Full validation of a spec: schema, evaluator, and the evaluator's view of the criteria."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from labctl.evaluators.base import EvaluatorFactory, Subject
from labctl.plugins import PluginRegistry
from labctl.trial.datasets import DatasetError, with_live_ground_truth
from labctl.trial.spec import LoadedSpec, SpecError, load_spec


def check_spec(path: Path, registry: PluginRegistry[type[EvaluatorFactory]]) -> LoadedSpec:
    """Validate a spec fully; raise :class:`SpecError` in words (file, line, field)."""
    loaded = load_spec(path, known_kinds=registry.names())
    factory = registry.get(loaded.spec.kind)
    try:  # a live trial is scored against its camera steps' annotation file
        spec, _ = with_live_ground_truth(loaded.spec, path)
    except DatasetError as exc:
        raise SpecError(path, [f"{path}: {exc}"]) from exc
    loaded = replace(loaded, spec=spec)
    if "scenes" in loaded.spec.options and "dataset" not in loaded.spec.options:
        return loaded  # the dataset is made when the trial runs; the evaluator checks it then
    options = loaded.spec.options
    if isinstance(options.get("dataset"), str):
        # Relative to the spec, as the runner resolves it.
        dataset = str((path.parent / options["dataset"]).resolve())
        loaded = replace(
            loaded, spec=loaded.spec.model_copy(update={"options": {**options, "dataset": dataset}})
        )
    probe = [
        Subject(key=f"{slot}-probe", role=sel.role) for slot, sel in loaded.spec.devices.items()
    ]
    try:
        factory.from_spec(loaded.spec, probe)
    except ValueError as exc:
        raise SpecError(path, [f"{path}: {exc}"]) from exc
    return loaded
