"""Driver options from rig config, validated with errors in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_options(model: type[M], options: Mapping[str, Any], driver: str) -> M:
    """``options`` as ``model``; ValueError naming the driver and each bad option."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        ]
        raise ValueError(f"bad options for driver {driver!r}: " + "; ".join(parts)) from None
