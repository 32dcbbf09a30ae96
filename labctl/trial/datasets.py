"""The scene dataset a trial uses: given (``options.dataset``, relative to the spec), made for
the run (``options.scenes: {count, seed, conditions}``, written into the run directory), or the
annotation file of the trial's ``live`` camera steps.

The evaluator and the replay stimulus then see one absolute ``options.dataset`` path, and the
simulated AI boxes enroll the same register (for a live trial: the ``register.json`` beside the
annotation file, if any).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.trial.spec import LiveStep, StimulusStep, TrialSpec


class DatasetError(RuntimeError):
    """The trial's dataset cannot be found or made; the message says why."""


class SceneRequest(BaseModel):
    """``options.scenes``: what to generate for the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=120, ge=1, le=100_000)
    seed: int = 7
    conditions: str | dict[str, list[float]] = "grid"
    size: tuple[int, int] = (1280, 720)


def annotation_file(path: Path) -> Path:
    """A COCO ground-truth file given as itself or as the folder holding ``annotations.json``."""
    return path / "annotations.json" if path.is_dir() else path


def live_annotations(spec: TrialSpec, spec_path: Path) -> Path | None:
    """The (absolute) annotation file of the spec's ``live`` steps; None without live steps.
    Raises DatasetError when live steps name different files: one trial, one ground truth."""
    found: dict[Path, str] = {}
    for phase in spec.phases or ():
        for step in phase.steps:
            if isinstance(step, StimulusStep) and isinstance(step.stimulus, LiveStep):
                given = step.stimulus.live.annotations
                found.setdefault(annotation_file((spec_path.parent / given).resolve()), given)
    if len(found) > 1:
        raise DatasetError(
            "live steps name different annotation files ("
            + ", ".join(found.values())
            + "); a trial is scored against one ground truth"
        )
    return next(iter(found), None)


def with_live_ground_truth(spec: TrialSpec, spec_path: Path) -> tuple[TrialSpec, Path | None]:
    """For a trial with ``live`` steps: the spec with ``options.dataset`` set to their annotation
    file (absolute), and that file; unchanged and None otherwise. ``options.dataset`` may name
    the same file (or its folder); anything else is a DatasetError in words."""
    live = live_annotations(spec, spec_path)
    if live is None:
        return spec, None
    options: dict[str, Any] = dict(spec.options)
    if options.get("scenes") is not None:
        raise DatasetError(
            f"options.scenes makes a new ground truth, but the live steps are scored against "
            f"their annotations ({live}); remove options.scenes"
        )
    given = options.get("dataset")
    if given is not None and annotation_file((spec_path.parent / str(given)).resolve()) != live:
        raise DatasetError(
            f"options.dataset ({given}) is not the live steps' annotation file ({live}); "
            "the evaluator must score against the frames' ground truth: drop options.dataset"
        )
    if not live.is_file():
        raise DatasetError(f"live annotations: {live}: no such file")
    options["dataset"] = str(live)
    return spec.model_copy(update={"options": options}), live


async def resolve_dataset(
    spec: TrialSpec, spec_path: Path, run_dir: Path, event: Callable[[str], None]
) -> tuple[TrialSpec, Path | None]:
    """The spec with ``options.dataset`` absolute (made if asked, or the live steps'
    annotation file), and the dataset directory."""
    spec, live = with_live_ground_truth(spec, spec_path)
    if live is not None:
        return spec, live.parent
    options: dict[str, Any] = dict(spec.options)
    given, scenes = options.pop("dataset", None), options.pop("scenes", None)
    if given is None and scenes is None:
        return spec, None
    if given is not None:
        path = (spec_path.parent / str(given)).resolve()
        if not (path / "annotations.json").is_file():
            raise DatasetError(f"options.dataset: {path} has no annotations.json")
    else:
        try:
            req = SceneRequest.model_validate(scenes)
        except ValidationError as exc:
            raise DatasetError(f"options.scenes: {exc}") from exc
        path = run_dir / "scenes"
        event(f"generating {req.count} scenes (seed {req.seed}, {req.conditions}) in {path}")
        from labctl.scenes import make_dataset  # OpenCV: imported only by trials that need it

        await asyncio.to_thread(
            make_dataset,
            path,
            count=req.count,
            seed=req.seed,
            conditions=req.conditions,
            size=req.size,
        )
    options["dataset"] = str(path)
    return spec.model_copy(update={"options": options}), path
