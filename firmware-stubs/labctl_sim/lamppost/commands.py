"""The node's command set: parameter models, the manifest's command list, validation.

Validation is the node's own (a real node does not share code with the lab's driver): a bad
request is answered ``rejected`` with ``{code, message}``; nothing here touches MQTT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.protocol.payloads import CommandSpec
from labctl_sim.lamppost.schedule import ScheduleParams


class SetLevelParams(BaseModel):
    """``set_level``: the luminaire at ``level`` % (manual override)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    level: Annotated[int, Field(ge=0, le=100)]


class NoopParams(BaseModel):
    """``noop``, the conformance operation (docs/protocol.md §8.6): wait, then succeed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 0


class NoParams(BaseModel):
    """Operations without parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


PARAMS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        "set_level": SetLevelParams,
        "set_schedule": ScheduleParams,
        "get_status": NoParams,
        "reboot": NoParams,
        "republish": NoParams,
        "noop": NoopParams,
    }
)
"""Operations the node accepts and their parameter models."""
TIMEOUT_MS: Mapping[str, int] = MappingProxyType(
    {"set_level": 2000, "set_schedule": 3000, "get_status": 2000, "reboot": 5000,
     "republish": 2000, "noop": 5000}
)


@dataclass(frozen=True, slots=True)
class Rejection(Exception):
    """Why the node refuses a request (``rejected`` with this code and message)."""

    code: str
    message: str


def command_specs() -> list[CommandSpec]:
    """The ``commands`` of the node's manifest (JSON schema of each operation's parameters)."""
    return [
        CommandSpec(op=op, params_schema=model.model_json_schema(), timeout_ms=TIMEOUT_MS[op])
        for op, model in PARAMS.items()
    ]


def validate(op: str, params: dict[str, Any]) -> BaseModel:
    """``params`` of ``op`` as its model; :class:`Rejection` in words if they are wrong."""
    model = PARAMS.get(op)
    if model is None:
        raise Rejection("unknown_op", f"unknown operation {op!r}; known: {', '.join(PARAMS)}")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        ]
        raise Rejection("bad_params", "; ".join(parts)[:1000]) from None
