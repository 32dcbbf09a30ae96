"""The COCO ground truth of a scene dataset (``annotations.json``), as pydantic models.

Standard COCO fields plus ``images[].conditions`` (what each image was rendered under) and
``annotations[].register_id`` / ``annotations[].occlusion`` (which register signboard it is and
how much of it an occluder hides). ``bbox`` is the axis-aligned box of the signboard's warped
quad (before occlusion) clipped to the image, ``area`` its ``w·h`` — so COCOeval's small /
medium / large ranges follow the box, as for any detector output.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl.scenes.conditions import Conditions
from labctl.scenes.register import SignboardId

GENERATOR: Final = "labctl-scenes/1"
CATEGORY_ID: Final = 1
CATEGORY_NAME: Final = "signboard"

NonNegative = Annotated[float, Field(ge=0.0)]


class CocoInfo(BaseModel):
    """``info``: who made the dataset and how (further keys kept as they are)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    generator: str = GENERATOR
    seed: int


class CocoCategory(BaseModel):
    """One category; scene datasets have exactly ``{"id": 1, "name": "signboard"}``."""

    model_config = ConfigDict(extra="forbid")

    id: int
    name: str


class CocoImage(BaseModel):
    """One image and the conditions it was rendered under."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1)
    file_name: str = Field(pattern=r"^images/[A-Za-z0-9_.-]+\.jpg$")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    conditions: Conditions


class CocoAnnotation(BaseModel):
    """One signboard in one image."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: int = Field(ge=1)
    image_id: int = Field(ge=1)
    category_id: int
    bbox: tuple[NonNegative, NonNegative, NonNegative, NonNegative]
    area: NonNegative
    iscrowd: Literal[0] = 0
    register_id: SignboardId
    occlusion: float = Field(ge=0.0, le=1.0)


class CocoGroundTruth(BaseModel):
    """``annotations.json``, with its cross-references checked."""

    model_config = ConfigDict(extra="forbid")

    info: CocoInfo
    categories: list[CocoCategory]
    images: list[CocoImage]
    annotations: list[CocoAnnotation]

    @model_validator(mode="after")
    def _references(self) -> CocoGroundTruth:
        if [(c.id, c.name) for c in self.categories] != [(CATEGORY_ID, CATEGORY_NAME)]:
            raise ValueError(f'categories must be [{{"id": {CATEGORY_ID}, "name": "signboard"}}]')
        image_ids = _unique("image id", (i.id for i in self.images))
        _unique("file_name", (i.file_name for i in self.images))
        _unique("annotation id", (a.id for a in self.annotations))
        sizes = {i.id: (i.width, i.height) for i in self.images}
        for a in self.annotations:
            if a.image_id not in image_ids:
                raise ValueError(f"annotation {a.id} names image {a.image_id}, which is not listed")
            if a.category_id != CATEGORY_ID:
                raise ValueError(f"annotation {a.id} has category {a.category_id}, not 1")
            x, y, w, h = a.bbox
            iw, ih = sizes[a.image_id]
            if x + w > iw + 0.01 or y + h > ih + 0.01:
                raise ValueError(
                    f"annotation {a.id}: bbox {list(a.bbox)} leaves its {iw}×{ih} image"
                )
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON document (what pycocotools reads)."""
        return self.model_dump(mode="json")


def _unique(what: str, values: Any) -> set[Any]:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {v!r} appears twice")
        seen.add(v)
    return seen
