"""The scene dataset a trial uses: given (``options.dataset``, relative to the spec) or made for
the run (``options.scenes: {count, seed, conditions}``, written into the run directory).

The evaluator and the replay stimulus then see one absolute ``options.dataset`` path, and the
simulated AI boxes enroll the same register.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.trial.spec import TrialSpec


class DatasetError(RuntimeError):
    """The trial's dataset cannot be found or made; the message says why."""


class SceneRequest(BaseModel):
    """``options.scenes``: what to generate for the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=120, ge=1, le=100_000)
    seed: int = 7
    conditions: str | dict[str, list[float]] = "grid"
    size: tuple[int, int] = (1280, 720)


async def resolve_dataset(
    spec: TrialSpec, spec_path: Path, run_dir: Path, event: Callable[[str], None]
) -> tuple[TrialSpec, Path | None]:
    """The spec with ``options.dataset`` absolute (made if asked), and that path."""
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
