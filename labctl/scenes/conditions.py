"""Image conditions of a scene and the plans that choose them per image.

A :class:`Conditions` record is what one image was rendered under; it is written verbatim into
``annotations.json`` (``images[].conditions``). A :class:`ConditionPlan` decides the conditions
of image *i* of a dataset:

- ``grid`` — one condition at a time is swept over its values while every other condition stays
  at the benign baseline, so a device's limitations read straight off the data ("recall falls
  when blur σ ≥ 3"). The sweeps are interleaved (the first value of every condition, then the
  second, …) and the grid repeats, so any count gets every condition; a count that is a multiple
  of :meth:`ConditionPlan.grid_size` gives a balanced sweep.
- ``sample`` — every condition drawn independently per image (from the image's own seed), for
  a realistic mix.
- ``benign`` — the baseline for every image.

Specs accepted by :func:`parse_conditions`: the words above; inline sweeps
``"blur=0,2,4;light=1,0.3"`` (a grid over just those); a ``.json``/``.yaml`` file or a mapping
shaped like :class:`ConditionPlan` (``{"mode": "grid", "sweeps": {...}, "baseline": {...}}``)
or a bare ``{condition: [values]}`` mapping (a grid).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ConditionName = Literal["light", "blur", "noise", "rain", "occlusion", "angle", "size"]
CONDITION_NAMES: Final[tuple[ConditionName, ...]] = (
    "light",
    "blur",
    "noise",
    "rain",
    "occlusion",
    "angle",
    "size",
)


class ConditionsError(ValueError):
    """A conditions spec is unusable; the message says why in words."""


class Conditions(BaseModel):
    """The conditions one image was rendered under (the ``conditions`` of a COCO image)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    light: float = Field(1.0, ge=0.0, le=1.0, description="1 = daylight, lower = darker")
    blur: float = Field(0.0, ge=0.0, le=25.0, description="Gaussian blur σ in px")
    noise: float = Field(0.0, ge=0.0, le=100.0, description="sensor noise σ on 0–255")
    rain: float = Field(0.0, ge=0.0, le=1.0, description="rain streak density 0–1")
    occlusion: float = Field(0.0, ge=0.0, le=0.9, description="fraction of each signboard hidden")
    angle: float = Field(0.0, ge=0.0, le=75.0, description="perspective yaw in degrees")
    size: float = Field(96.0, ge=8.0, le=400.0, description="height in px of the smallest sign")


BASELINE: Final = Conditions()

# The default sweep of each condition; its first value is the benign baseline.
DEFAULT_SWEEPS: Final[Mapping[ConditionName, tuple[float, ...]]] = {
    "blur": (0.0, 1.0, 2.0, 3.0, 4.0),
    "light": (1.0, 0.5, 0.25, 0.1, 0.05),
    "noise": (0.0, 5.0, 10.0, 20.0, 30.0),
    "rain": (0.0, 0.25, 0.5, 1.0),
    "occlusion": (0.0, 0.1, 0.25, 0.4, 0.6),
    "angle": (0.0, 20.0, 35.0, 50.0, 65.0),
    "size": (96.0, 64.0, 48.0, 32.0, 24.0, 16.0),
}

# Sampling keeps each of these at the baseline in half of the images, so a sampled image has
# about three adverse conditions at once rather than all of them.
_OFTEN_ABSENT: Final[frozenset[str]] = frozenset(
    {"light", "blur", "noise", "rain", "occlusion", "angle"}
)


class ConditionPlan(BaseModel):
    """How a dataset chooses the conditions of each image (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    mode: Literal["grid", "sample", "benign"] = "grid"
    baseline: Conditions = BASELINE
    sweeps: dict[ConditionName, list[float]] = Field(
        default_factory=dict, description="grid: values per condition (default: DEFAULT_SWEEPS)"
    )
    ranges: dict[ConditionName, tuple[float, float]] = Field(
        default_factory=dict, description="sample: [low, high] per condition (default: sweeps)"
    )

    @model_validator(mode="after")
    def _values_in_bounds(self) -> ConditionPlan:
        for name, values in self.sweeps.items():
            if not values:
                raise ValueError(f"the sweep of {name} has no values")
            for value in values:
                _with(self.baseline, name, value)
        for name, (low, high) in self.ranges.items():
            if low > high:
                raise ValueError(f"the range of {name} is empty: {low} > {high}")
            _with(self.baseline, name, low)
            _with(self.baseline, name, high)
        return self

    def effective_sweeps(self) -> dict[ConditionName, tuple[float, ...]]:
        """The sweeps a grid uses: the given ones, or every default sweep."""
        if self.sweeps:
            return {name: tuple(values) for name, values in self.sweeps.items()}
        return dict(DEFAULT_SWEEPS)

    def grid_points(self) -> list[Conditions]:
        """The grid in order: first value of every sweep, then the second, …"""
        sweeps = self.effective_sweeps()
        longest = max(len(v) for v in sweeps.values())
        return [
            _with(self.baseline, name, values[j])
            for j in range(longest)
            for name, values in sweeps.items()
            if j < len(values)
        ]

    def grid_size(self) -> int:
        """Images in one full pass of the grid (1 for benign and sample)."""
        return len(self.grid_points()) if self.mode == "grid" else 1

    def extremes(self) -> list[Conditions]:
        """Conditions with the largest signboards this plan can ask for (for a fit check)."""
        if self.mode == "benign":
            return [self.baseline]
        if self.mode == "grid":
            return self.grid_points()
        size = max(self.baseline.size, self._range("size")[1])
        angle = max(self.baseline.angle, self._range("angle")[1])
        return [_with(_with(self.baseline, "size", size), "angle", a) for a in (0.0, angle)]

    def conditions_for(self, index: int, seed: int) -> Conditions:
        """The conditions of image ``index`` (0-based) of a dataset made with ``seed``."""
        if self.mode == "benign":
            return self.baseline
        if self.mode == "grid":
            points = self.grid_points()
            return points[index % len(points)]
        # Its own stream per image (spawn key 2), apart from the scene's drawing stream.
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index)))
        values: dict[str, float] = {}
        for name in CONDITION_NAMES:
            low, high = self._range(name)
            absent = rng.random() < 0.5
            if name == "size":  # log-uniform: small signboards are as common as large ones
                value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            else:
                value = float(rng.uniform(low, high))
            if name in _OFTEN_ABSENT and absent:
                value = getattr(self.baseline, name)
            # Rounded before use, so the recorded value is exactly the one applied.
            values[name] = round(value, 1 if name in ("size", "angle", "noise") else 2)
        return Conditions.model_validate(values)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for ``annotations.json`` ``info``."""
        out: dict[str, Any] = {"mode": self.mode, "baseline": self.baseline.model_dump()}
        if self.mode == "grid":
            out["sweeps"] = {k: list(v) for k, v in self.effective_sweeps().items()}
            out["grid_size"] = self.grid_size()
        elif self.mode == "sample":
            out["ranges"] = {k: list(self._range(k)) for k in CONDITION_NAMES}
        return out

    def _range(self, name: ConditionName) -> tuple[float, float]:
        if name in self.ranges:
            return self.ranges[name]
        values = DEFAULT_SWEEPS[name]
        return (min(values), max(values))


def _with(base: Conditions, name: str, value: float) -> Conditions:
    try:
        return Conditions.model_validate({**base.model_dump(), name: value})
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ValueError(f"{name}={value}: {problem}") from None


def parse_conditions(spec: str | Mapping[str, Any] | ConditionPlan) -> ConditionPlan:
    """A plan from a word, inline sweeps, a JSON/YAML file or a mapping; ConditionsError else."""
    if isinstance(spec, ConditionPlan):
        return spec
    if isinstance(spec, Mapping):
        return _from_mapping(spec, "the conditions mapping")
    text = spec.strip()
    if text in ("grid", "sample", "benign"):
        return ConditionPlan(mode=text)
    if "=" in text:
        return _from_mapping(_parse_inline(text), f"conditions {text!r}")
    path = Path(text)
    if not path.is_file():
        raise ConditionsError(
            f"conditions {text!r} is neither grid, sample, benign, inline sweeps like "
            "'blur=0,2,4;light=1,0.3', nor an existing .json/.yaml file"
        )
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConditionsError(f"{path}: cannot read the conditions file: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConditionsError(f"{path}: the conditions file must hold a mapping")
    return _from_mapping(data, str(path))


def _parse_inline(text: str) -> dict[str, list[float]]:
    sweeps: dict[str, list[float]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition("=")
        if not sep or not values.strip():
            raise ConditionsError(f"conditions: {part!r} is not name=value,value,…")
        try:
            sweeps[name.strip()] = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConditionsError(
                f"conditions: {part!r} has a value that is not a number"
            ) from None
    return sweeps


def _from_mapping(data: Mapping[str, Any], where: str) -> ConditionPlan:
    plan_keys = set(ConditionPlan.model_fields)
    payload: Mapping[str, Any] = data
    if data and not set(data) & plan_keys:  # a bare {condition: values} mapping is a grid
        unknown = sorted(set(data) - set(CONDITION_NAMES))
        if unknown:
            raise ConditionsError(
                f"{where}: unknown condition {', '.join(unknown)} "
                f"(known: {', '.join(CONDITION_NAMES)})"
            )
        payload = {
            "mode": "grid",
            "sweeps": {k: v if isinstance(v, list | tuple) else [v] for k, v in data.items()},
        }
    try:
        return ConditionPlan.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            _where(e["loc"]) + e["msg"].removeprefix("Value error, ") for e in exc.errors()
        )
        raise ConditionsError(f"{where}: {problems}") from None


def _where(loc: tuple[int | str, ...]) -> str:
    path = ".".join(str(p) for p in loc if p != "[key]")
    return f"{path}: " if path else ""
