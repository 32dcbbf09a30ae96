"""The signboard register: the approved signboards a scene may show, with their templates.

On disk (``register.json`` beside a ``register/`` folder of PNGs)::

    {"schema": "labctl-register/1",
     "signboards": [{"id": "SB-0001", "text": "WING ON TEA", "fg": [r, g, b], "bg": [r, g, b],
                     "width_m": 2.4, "height_m": 0.8, "template": "register/SB-0001.png"}]}

In memory a :class:`Register` is the validated file plus each template as a BGR array
(OpenCV's channel order; the PNG on disk is an ordinary RGB image).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from labctl.scenes.templates import TEMPLATE_HEIGHT, draw_template, random_style

REGISTER_SCHEMA: Final = "labctl-register/1"
REGISTER_FILE: Final = "register.json"
TEMPLATE_DIR: Final = "register"
DEFAULT_REGISTER_SIZE: Final = 12
MAX_REGISTER_SIZE: Final = 500

SignboardId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]

_NAMES: Final = (
    "WING ON TEA", "GOLDEN DRAGON", "LUCKY BAKERY", "HARBOUR PHARMACY", "SUNRISE OPTICAL",
    "PEARL NOODLES", "KOWLOON HARDWARE", "JADE GARDEN", "FORTUNE BOOKS", "SILVER MOON CAFE",
    "HAPPY VALLEY FLORIST", "STAR FERRY TAILOR", "OCEAN SEAFOOD", "PHOENIX WATCHES",
    "BAMBOO DIM SUM", "LOTUS SPA", "RED LANTERN BAR", "TIN HAU HERBS", "VICTORIA CAMERAS",
    "ORCHID SALON", "TAI PING SHOES", "MING KEE ROAST", "CROWN LAUNDRY", "GRAND PAWN",
    "NORTH POINT GYM", "HOI SIN KITCHEN", "SAM'S BARBER", "NAM KEE ELECTRIC", "PRINCE TOYS",
    "LUEN FAT PRINTING", "EMPRESS JEWELLERY", "PEAK TRAM TRAVEL",
)  # fmt: skip
_ASPECTS: Final = (2.0, 2.5, 3.0, 3.5, 4.0)
_HEIGHTS_M: Final = (0.6, 0.8, 1.0, 1.2)


class RegisterError(ValueError):
    """A register cannot be read or made; the message says why in words."""


class Signboard(BaseModel):
    """One approved signboard."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: SignboardId
    text: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    fg: RGB
    bg: RGB
    width_m: float = Field(gt=0.0, le=50.0)
    height_m: float = Field(gt=0.0, le=20.0)
    template: str = Field(description="the frontal template PNG, relative to the register's dir")

    @field_validator("template")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        p = PurePosixPath(value)
        if p.is_absolute() or ".." in p.parts or not value or "\\" in value:
            raise ValueError(f"template {value!r} must be a relative path inside the dataset")
        return value

    @property
    def aspect(self) -> float:
        """Width over height."""
        return self.width_m / self.height_m


class RegisterFile(BaseModel):
    """``register.json`` as validated."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["labctl-register/1"] = Field(REGISTER_SCHEMA, alias="schema")
    signboards: list[Signboard] = Field(min_length=1, max_length=MAX_REGISTER_SIZE)

    @model_validator(mode="after")
    def _unique_ids(self) -> RegisterFile:
        seen: set[str] = set()
        for sb in self.signboards:
            if sb.id in seen:
                raise ValueError(f"signboard id {sb.id} appears twice")
            seen.add(sb.id)
        return self


@dataclass(frozen=True)
class Register:
    """The validated register and each signboard's template (BGR, uint8)."""

    file: RegisterFile
    templates: Mapping[str, NDArray[np.uint8]]

    @property
    def signboards(self) -> list[Signboard]:
        """The signboards, in register order."""
        return list(self.file.signboards)

    def get(self, signboard_id: str) -> Signboard:
        """The signboard with ``signboard_id``; KeyError if absent."""
        for sb in self.file.signboards:
            if sb.id == signboard_id:
                return sb
        raise KeyError(signboard_id)

    def template(self, signboard_id: str) -> NDArray[np.uint8]:
        """The frontal template of ``signboard_id`` (BGR)."""
        return self.templates[signboard_id]


def generate_register(seed: int, count: int = DEFAULT_REGISTER_SIZE) -> Register:
    """``count`` distinct shop signboards drawn from ``seed`` (same seed, same register)."""
    if not 1 <= count <= MAX_REGISTER_SIZE:
        raise RegisterError(f"a register holds 1 to {MAX_REGISTER_SIZE} signboards, not {count}")
    # Its own stream (spawn key 0), apart from the images' streams.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    order = rng.permutation(len(_NAMES))
    hue0 = rng.uniform(0, 180)
    hue_order = rng.permutation(count)
    signboards: list[Signboard] = []
    templates: dict[str, NDArray[np.uint8]] = {}
    for i in range(count):
        sb_id = f"SB-{i + 1:04d}"
        name = _NAMES[int(order[i % len(_NAMES)])]
        if i >= len(_NAMES):  # more signboards than names: branches keep the text distinct
            name = f"{name} {i // len(_NAMES) + 1}"
        # Hues spread evenly around the wheel, so background colours differ between shops.
        hue = (hue0 + 180.0 * float(hue_order[i]) / count) % 180
        subtitle = (
            f"EST. {rng.integers(1920, 2020)}"
            if rng.random() < 0.5
            else f"TEL {rng.integers(2000, 9999)} {rng.integers(1000, 9999)}"
        )
        style = random_style(rng, hue, subtitle)
        aspect = float(_ASPECTS[rng.integers(len(_ASPECTS))])
        height_m = float(_HEIGHTS_M[rng.integers(len(_HEIGHTS_M))])
        width_px = round(TEMPLATE_HEIGHT * aspect)
        templates[sb_id] = draw_template(name, width_px, style)
        signboards.append(
            Signboard(
                id=sb_id,
                text=name,
                fg=style.fg[::-1],
                bg=style.bg[::-1],
                width_m=round(aspect * height_m, 2),
                height_m=height_m,
                template=f"{TEMPLATE_DIR}/{sb_id}.png",
            )
        )
    return Register(RegisterFile(signboards=signboards), templates)


def load_register(path: Path) -> Register:
    """The register at ``path`` (a ``register.json`` or a dataset dir); RegisterError else."""
    file = path / REGISTER_FILE if path.is_dir() else path
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RegisterError(f"{file}: cannot read the register: {exc.strerror or exc}") from None
    try:
        parsed = RegisterFile.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegisterError(f"{file}: not JSON: {exc}") from None
    except ValidationError as exc:
        raise RegisterError(f"{file}: {_problems(exc)}") from None
    templates: dict[str, NDArray[np.uint8]] = {}
    for sb in parsed.signboards:
        png = file.parent / sb.template
        image = cv2.imread(str(png), cv2.IMREAD_COLOR) if png.is_file() else None
        if image is None:
            raise RegisterError(
                f"{file}: the template of {sb.id} ({sb.template}) is missing or unreadable"
            )
        if min(image.shape[:2]) < 8:
            raise RegisterError(f"{file}: the template of {sb.id} is smaller than 8 px")
        templates[sb.id] = np.ascontiguousarray(image, dtype=np.uint8)
    return Register(parsed, templates)


def write_register(register: Register, root: Path) -> None:
    """Write ``register.json`` and ``register/<id>.png`` under ``root`` (template paths renamed)."""
    (root / TEMPLATE_DIR).mkdir(parents=True, exist_ok=True)
    entries: list[Signboard] = []
    for sb in register.file.signboards:
        rel = f"{TEMPLATE_DIR}/{sb.id}.png"
        ok, png = cv2.imencode(".png", register.template(sb.id))
        if not ok:  # pragma: no cover - only on a broken OpenCV build
            raise RegisterError(f"cannot encode the template of {sb.id} as PNG")
        (root / rel).write_bytes(png.tobytes())
        entries.append(sb.model_copy(update={"template": rel}))
    doc = RegisterFile(signboards=entries).model_dump(mode="json", by_alias=True)
    (root / REGISTER_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'register'}: {e['msg']}" for e in exc.errors()
    )
