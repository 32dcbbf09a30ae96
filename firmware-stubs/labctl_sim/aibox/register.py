"""The signboard register a vendor enrolls into the box: ``register.json`` plus template PNGs.

The file format is the lab's scene-dataset format (``labctl-register/1``); the box needs only
each signboard's id and its canonical frontal rendering (the template).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

REGISTER_FILE = "register.json"
MAX_SIGNBOARDS = 10_000

Image = npt.NDArray[np.uint8]


class RegisterError(ValueError):
    """The register directory cannot be enrolled (missing file, bad JSON, unreadable template)."""


class SignboardEntry(BaseModel):
    """One approved signboard. Descriptive fields the box does not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    template: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """Path of the template PNG, relative to the register directory."""


class RegisterFile(BaseModel):
    """``register.json``."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_: Literal["labctl-register/1"] = Field(alias="schema")
    signboards: list[SignboardEntry] = Field(min_length=1, max_length=MAX_SIGNBOARDS)


@dataclass(frozen=True, slots=True)
class Template:
    """One enrolled signboard: its register id and its template as a BGR image."""

    ref: str
    image: Image


def load_register(directory: Path) -> list[Template]:
    """Read ``directory/register.json`` and every template it names.

    Raises :class:`RegisterError` naming the file and the reason when anything is wrong: a box
    that starts with half a register would report misleading identifications.
    """
    path = directory / REGISTER_FILE
    try:
        register = RegisterFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise RegisterError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise RegisterError(f"{path} is not a labctl-register/1 file: {exc}") from exc
    ids = [s.id for s in register.signboards]
    if len(set(ids)) != len(ids):
        raise RegisterError(f"{path} repeats signboard ids")
    root = directory.resolve()
    templates = []
    for entry in register.signboards:
        file = (root / entry.template).resolve()
        if not file.is_relative_to(root):
            raise RegisterError(f"{path}: template of {entry.id} lies outside {root}")
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise RegisterError(f"{path}: template of {entry.id} ({file}) is not a readable image")
        templates.append(Template(entry.id, np.ascontiguousarray(image, dtype=np.uint8)))
    return templates
