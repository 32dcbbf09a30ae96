"""COCO ground truth and detection results, validated at the boundary and held as arrays.

Ground truth is a COCO ``annotations.json`` (``images``, ``annotations``, ``categories``; the
scene dataset adds ``conditions`` to images and ``register_id`` to annotations). Results are a
COCO results list: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "ref"?}]``.
Every problem is a :class:`CocoError` naming the file and the entry, never a traceback.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NotRequired

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

from labctl.evaluators.coco import DtBoxes, FloatArray, GtBoxes, IntArray

MAX_ERRORS_SHOWN = 5


class CocoError(ValueError):
    """Input that cannot be evaluated; ``str()`` names the file and entry."""


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


Box = tuple[float, float, float, float]
Count = Annotated[int, Field(ge=0, le=1)]


class _Image(_In):
    id: StrictInt
    width: float | None = Field(default=None, gt=0)
    height: float | None = Field(default=None, gt=0)
    file_name: str = ""
    conditions: dict[str, float] = Field(default_factory=dict)


_TD = ConfigDict(extra="ignore", allow_inf_nan=False)


@with_config(_TD)
class _Annotation(TypedDict):
    # TypedDicts, not models, for the long lists: the same rules without an object per entry.
    id: StrictInt
    image_id: StrictInt
    category_id: StrictInt
    bbox: Box
    area: NotRequired[float]
    """pycocotools requires it; when absent we use w·h."""
    iscrowd: NotRequired[Count]
    register_id: NotRequired[str | None]


class _Category(_In):
    id: StrictInt
    name: str


class _Plan(_In):
    mode: str = ""
    baseline: dict[str, float] | None = None


class _Info(_In):
    conditions: _Plan | None = None


class _GroundTruth(_In):
    info: _Info | None = None
    images: list[_Image]
    annotations: list[_Annotation] = Field(default_factory=list)
    categories: list[_Category] = Field(min_length=1)


@with_config(_TD)
class _Result(TypedDict):
    image_id: StrictInt
    category_id: StrictInt
    bbox: Box
    score: float
    ref: NotRequired[str | None]


_RESULTS = TypeAdapter(list[_Result])


@dataclass(frozen=True, eq=False, slots=True)
class CocoGroundTruth:
    """Ground truth as arrays. Images are indexed in ascending id order, categories likewise;
    ``boxes`` hold the annotations of known images and categories in file order."""

    source: str
    image_ids: IntArray
    width: FloatArray
    """Per image; NaN when the file does not say."""
    height: FloatArray
    conditions: tuple[Mapping[str, float], ...]
    category_ids: IntArray
    category_names: tuple[str, ...]
    boxes: GtBoxes
    register_id: tuple[str | None, ...]
    notes: tuple[str, ...] = ()
    baseline: Mapping[str, float] | None = None
    """The benign value of each condition when the dataset sweeps one condition at a time
    (``labctl scenes make --conditions grid``); None otherwise."""

    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.image_ids.size)

    @property
    def n_categories(self) -> int:
        """Number of categories."""
        return int(self.category_ids.size)

    def image_index(self, ids: IntArray) -> IntArray:
        """Index of each image id, -1 for ids the ground truth does not have."""
        return _lookup(self.image_ids, ids)

    def category_index(self, ids: IntArray) -> IntArray:
        """Index of each category id, -1 for unknown ids."""
        return _lookup(self.category_ids, ids)

    def take(self, images: IntArray) -> CocoGroundTruth:
        """The ground truth of ``images`` (indices; repeats allowed), re-indexed so image ``j``
        of the result is ``images[j]`` of this one."""
        b = self.boxes
        order = np.argsort(b.image, kind="stable")
        sorted_img = b.image[order]
        lo = np.searchsorted(sorted_img, images, side="left")
        n = np.searchsorted(sorted_img, images, side="right") - lo
        pick = order[np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n - lo, n)]
        new_image = np.repeat(np.arange(images.size, dtype=np.int64), n)
        return CocoGroundTruth(
            source=self.source,
            baseline=self.baseline,
            image_ids=self.image_ids[images],
            width=self.width[images],
            height=self.height[images],
            conditions=tuple(self.conditions[i] for i in images.tolist()),
            category_ids=self.category_ids,
            category_names=self.category_names,
            boxes=GtBoxes(
                image=new_image,
                category=b.category[pick],
                bbox=b.bbox[pick],
                area=b.area[pick],
                crowd=b.crowd[pick],
                ann_id=b.ann_id[pick],
            ),
            register_id=tuple(self.register_id[i] for i in pick.tolist()),
            notes=self.notes,
        )


@dataclass(frozen=True, eq=False, slots=True)
class CocoDetections:
    """Detections as arrays (image and category as indices of a :class:`CocoGroundTruth`)."""

    boxes: DtBoxes
    ref: tuple[str | None, ...]
    notes: tuple[str, ...] = ()


def _lookup(sorted_ids: IntArray, ids: IntArray) -> IntArray:
    if sorted_ids.size == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CocoError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CocoError(f"{path}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise CocoError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CocoError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        return json.loads(text)  # the stdlib parser: NaN reaches validation, which names it
    except json.JSONDecodeError as exc:
        raise CocoError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None


def _where(loc: Sequence[int | str], doc: Any) -> str:
    """``annotations[17] (id 42).bbox`` or ``entry 3 (image_id 7).score`` for messages."""
    parts: list[str] = []
    node = doc
    for part in loc:
        if isinstance(part, int):
            label = f"[{part}]" if parts else f"entry {part}"
            try:
                node = node[part]
                if isinstance(node, dict):
                    key = next((k for k in ("id", "image_id") if type(node.get(k)) is int), None)
                    if key is not None:
                        label += f" ({key} {node[key]})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            try:
                node = node[part] if isinstance(node, dict) else None
            except (KeyError, TypeError):
                node = None
            parts.append(f".{part}" if parts else part)
    return "".join(parts) or "(top level)"


def _problems(path: str, exc: ValidationError, doc: Any) -> str:
    errors = exc.errors(include_url=False)
    lines = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "finite_number":
            msg = "NaN and infinity are not numbers here"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{path}: {_where(err['loc'], doc)}: {msg}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"… and {len(errors) - MAX_ERRORS_SHOWN} more problems")
    return "\n".join(lines)


def _check_box(path: str, what: str, bbox: Box) -> None:
    if bbox[2] < 0 or bbox[3] < 0:
        raise CocoError(f"{path}: {what}: bbox width and height must be ≥ 0, got {list(bbox)}")


def parse_ground_truth(doc: Any, source: str) -> CocoGroundTruth:
    """Validate a COCO ground-truth document; raise :class:`CocoError` naming the entry."""
    if not isinstance(doc, dict):
        raise CocoError(f"{source}: expected a COCO object with images, annotations, categories")
    try:
        gt = _GroundTruth.model_validate(doc)
    except ValidationError as exc:
        raise CocoError(_problems(source, exc, doc)) from None
    notes: list[str] = []
    image_ids = np.array(sorted(im.id for im in gt.images), dtype=np.int64)
    if np.unique(image_ids).size != image_ids.size:
        dup = image_ids[:-1][np.diff(image_ids) == 0][0]
        raise CocoError(f"{source}: images: id {dup} is given twice")
    cats = sorted(gt.categories, key=lambda c: c.id)
    cat_ids = np.array([c.id for c in cats], dtype=np.int64)
    if np.unique(cat_ids).size != cat_ids.size:
        raise CocoError(f"{source}: categories: an id is given twice")
    anns = gt.annotations
    ann_ids = [a["id"] for a in anns]
    if len(set(ann_ids)) != len(ann_ids):
        dup_id = next(i for i, n in Counter(ann_ids).items() if n > 1)
        raise CocoError(f"{source}: annotations: id {dup_id} is given twice")
    for i, a in enumerate(anns):
        _check_box(source, f"annotations[{i}] (id {a['id']})", a["bbox"])
    by_id = {im.id: im for im in gt.images}
    ordered = [by_id[int(i)] for i in image_ids]
    img = _lookup(image_ids, np.array([a["image_id"] for a in anns], dtype=np.int64))
    cat = _lookup(cat_ids, np.array([a["category_id"] for a in anns], dtype=np.int64))
    if (img < 0).any():
        notes.append(f"{int((img < 0).sum())} annotations of images not listed: not evaluated")
    if (cat < 0).any():
        notes.append(f"{int((cat < 0).sum())} annotations of unlisted categories: not evaluated")
    keep = np.flatnonzero((img >= 0) & (cat >= 0))
    bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    area = np.array([a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns])
    plan = gt.info.conditions if gt.info is not None else None
    return CocoGroundTruth(
        source=source,
        baseline=plan.baseline if plan is not None and plan.mode == "grid" else None,
        image_ids=image_ids,
        width=np.array([math.nan if im.width is None else im.width for im in ordered]),
        height=np.array([math.nan if im.height is None else im.height for im in ordered]),
        conditions=tuple(dict(im.conditions) for im in ordered),
        category_ids=cat_ids,
        category_names=tuple(c.name for c in cats),
        boxes=GtBoxes(
            image=img[keep],
            category=cat[keep],
            bbox=bbox[keep],
            area=area[keep],
            crowd=np.array([anns[i].get("iscrowd", 0) == 1 for i in keep.tolist()], dtype=bool),
            ann_id=np.array(ann_ids, dtype=np.int64)[keep],
        ),
        register_id=tuple(anns[i].get("register_id") for i in keep.tolist()),
        notes=tuple(notes),
    )


def load_ground_truth(path: Path) -> CocoGroundTruth:
    """Read and validate a COCO ground-truth file (or a dataset directory's
    ``annotations.json``)."""
    if path.is_dir():
        path = path / "annotations.json"
    return parse_ground_truth(_read_json(path), str(path))


def parse_results(doc: Any, gt: CocoGroundTruth, source: str) -> CocoDetections:
    """Validate a COCO results list against ``gt``; raise :class:`CocoError` naming the entry.
    Detections of categories the ground truth does not list are dropped (as pycocotools does)
    and noted."""
    if not isinstance(doc, list):
        raise CocoError(
            f"{source}: expected a COCO results list "
            '[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, …]'
        )
    try:
        results = _RESULTS.validate_python(doc)
    except ValidationError as exc:
        raise CocoError(_problems(source, exc, doc)) from None
    for i, r in enumerate(results):
        _check_box(source, f"entry {i}", r["bbox"])
    img = gt.image_index(np.array([r["image_id"] for r in results], dtype=np.int64))
    if (img < 0).any():
        i = int(np.flatnonzero(img < 0)[0])
        raise CocoError(
            f"{source}: entry {i}: image_id {results[i]['image_id']} is not an image of "
            f"{gt.source}"
            + (f" ({int((img < 0).sum())} entries in all)" if (img < 0).sum() > 1 else "")
        )
    cat = gt.category_index(np.array([r["category_id"] for r in results], dtype=np.int64))
    notes = []
    if (cat < 0).any():
        unknown = sorted({results[i]["category_id"] for i in np.flatnonzero(cat < 0).tolist()})
        notes.append(
            f"{int((cat < 0).sum())} detections of categories not in the ground truth "
            f"({', '.join(map(str, unknown[:10]))}): not evaluated"
        )
    return CocoDetections(
        boxes=DtBoxes(
            image=img,
            category=cat,
            bbox=np.array([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4),
            score=np.array([r["score"] for r in results], dtype=np.float64),
        ),
        ref=tuple(r.get("ref") for r in results),
        notes=tuple(notes),
    )


def load_results(path: Path, gt: CocoGroundTruth) -> CocoDetections:
    """Read and validate a COCO results file against ``gt``."""
    return parse_results(_read_json(path), gt, str(path))
