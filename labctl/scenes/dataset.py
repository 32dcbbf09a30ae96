"""Writing and reading a scene dataset directory (register, JPEG scenes, COCO ground truth).

A dataset is built in a hidden sibling directory and renamed into place only when complete,
so an interrupted run leaves either nothing or a ``.NAME.*.partial`` directory — never a
half dataset under the name asked for. Image *i* is rendered from its own generator
(``SeedSequence(seed, spawn_key=(1, i))``), so output is identical for a seed whatever the
number of worker processes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Final

import cv2
import numpy as np
from pydantic import ValidationError

from labctl.scenes.coco import (
    CATEGORY_ID,
    CATEGORY_NAME,
    GENERATOR,
    CocoAnnotation,
    CocoCategory,
    CocoGroundTruth,
    CocoImage,
    CocoInfo,
)
from labctl.scenes.conditions import (
    ConditionPlan,
    ConditionsError,
    parse_conditions,
)
from labctl.scenes.effects import JPEG_QUALITY, encode_jpeg
from labctl.scenes.register import (
    REGISTER_FILE,
    Register,
    RegisterError,
    generate_register,
    load_register,
    write_register,
)
from labctl.scenes.render import SceneError, check_fits, render_scene

ANNOTATIONS_FILE: Final = "annotations.json"
IMAGE_DIR: Final = "images"
MAX_COUNT: Final = 1_000_000
MIN_SIDE, MAX_SIDE = 160, 8192
_CHUNK: Final = 16  # images per worker task: amortises sending the register to the worker

Progress = Callable[[int, int], None]


class DatasetError(ValueError):
    """A dataset cannot be made or read; the message says why in words."""


@dataclass(frozen=True)
class Dataset:
    """A scene dataset on disk, validated: its register and its COCO ground truth."""

    root: Path
    register: Register
    ground_truth: CocoGroundTruth

    @property
    def annotations_path(self) -> Path:
        """``annotations.json`` (what ``pycocotools.coco.COCO`` loads)."""
        return self.root / ANNOTATIONS_FILE

    @property
    def images(self) -> list[CocoImage]:
        """The images, in id order."""
        return sorted(self.ground_truth.images, key=lambda i: i.id)

    def image_path(self, image_id: int) -> Path:
        """The JPEG of ``image_id``; KeyError if there is no such image."""
        return self.root / self._images_by_id[image_id].file_name

    def annotations_for(self, image_id: int) -> list[CocoAnnotation]:
        """The signboards in ``image_id``."""
        return list(self._annotations_by_image.get(image_id, ()))

    @cached_property
    def _images_by_id(self) -> dict[int, CocoImage]:
        return {i.id: i for i in self.ground_truth.images}

    @cached_property
    def _annotations_by_image(self) -> dict[int, list[CocoAnnotation]]:
        out: dict[int, list[CocoAnnotation]] = {}
        for a in self.ground_truth.annotations:
            out.setdefault(a.image_id, []).append(a)
        return out

    @staticmethod
    def frame_id(image: CocoImage) -> str:
        """A frame id for the wire (``[A-Za-z0-9_.:-]``): the file's stem, e.g. ``000001``."""
        return PurePosixPath(image.file_name).stem


def make_dataset(
    out: Path,
    count: int,
    seed: int,
    conditions: str | Mapping[str, Any] | ConditionPlan = "grid",
    size: tuple[int, int] = (1280, 720),
    register: Register | None = None,
    *,
    force: bool = False,
    jobs: int = 1,
    progress: Progress | None = None,
) -> Dataset:
    """Render ``count`` scenes into ``out`` and return the dataset; DatasetError in words.

    ``register`` defaults to 12 signboards generated from ``seed``. ``force`` replaces an
    existing dataset at ``out`` (never any other non-empty directory). ``jobs`` > 1 renders in
    that many processes; the output is the same.
    """
    if not 1 <= count <= MAX_COUNT:
        raise DatasetError(f"count must be between 1 and {MAX_COUNT}, not {count}")
    if seed < 0:
        raise DatasetError(f"seed must be 0 or more, not {seed}")
    if jobs < 1:
        raise DatasetError(f"jobs must be 1 or more, not {jobs}")
    width, height = size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise DatasetError(f"image size {width}x{height} is outside {MIN_SIDE}–{MAX_SIDE} px")
    try:
        plan = parse_conditions(conditions)
        reg = register if register is not None else generate_register(seed)
        check_fits(reg, plan.extremes(), size)
    except (ConditionsError, RegisterError, SceneError) as exc:
        raise DatasetError(str(exc)) from None
    _check_target(out, force)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        write_register(reg, tmp)
        (tmp / IMAGE_DIR).mkdir()
        images: list[CocoImage] = []
        annotations: list[CocoAnnotation] = []
        # closing(): on an error or Ctrl-C the workers stop before the directory goes.
        with contextlib.closing(_render_all(tmp, reg, plan, seed, count, size, jobs)) as chunks:
            for chunk in chunks:
                for image, objects in chunk:
                    images.append(image)
                    for obj in objects:
                        annotations.append(obj.model_copy(update={"id": len(annotations) + 1}))
                    if progress is not None:
                        progress(len(images), count)
        info = CocoInfo.model_validate(
            {
                "description": "labctl synthetic street scenes with registered signboards",
                "version": "1",
                "generator": GENERATOR,
                "seed": seed,
                "count": count,
                "size": [width, height],
                "jpeg_quality": JPEG_QUALITY,
                "conditions": plan.describe(),
                "bbox": "axis-aligned box of the signboard's perspective quad before occlusion, "
                "clipped to the image; area = w*h of that box",
            }
        )
        gt = CocoGroundTruth(
            info=info,
            categories=[CocoCategory(id=CATEGORY_ID, name=CATEGORY_NAME)],
            images=images,
            annotations=annotations,
        )
        text = json.dumps(gt.to_json(), indent=1) + "\n"
        (tmp / ANNOTATIONS_FILE).write_text(text, encoding="utf-8")
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_dataset(out)


def load_dataset(path: Path) -> Dataset:
    """The dataset at ``path``, validated; DatasetError naming the problem otherwise."""
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory (a scene dataset is one)")
    try:
        register = load_register(path / REGISTER_FILE)
    except RegisterError as exc:
        raise DatasetError(str(exc)) from None
    gt_path = path / ANNOTATIONS_FILE
    try:
        gt = CocoGroundTruth.model_validate_json(gt_path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"{gt_path}: cannot read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise DatasetError(f"{gt_path}: {problems}") from None
    known = {sb.id for sb in register.signboards}
    for a in gt.annotations:
        if a.register_id not in known:
            raise DatasetError(
                f"{gt_path}: annotation {a.id} names signboard {a.register_id}, "
                "which the register does not hold"
            )
    for image in gt.images:
        if not (path / image.file_name).is_file():
            raise DatasetError(f"{path}: image {image.id} ({image.file_name}) is missing")
    return Dataset(path, register, gt)


def render_image(
    register: Register, plan: ConditionPlan, seed: int, index: int, size: tuple[int, int]
) -> tuple[bytes, CocoImage, list[CocoAnnotation]]:
    """Image ``index`` (0-based) of the dataset: its JPEG bytes and ground truth (ids unset)."""
    conditions = plan.conditions_for(index, seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    scene = render_scene(register, conditions, rng, size)
    image_id = index + 1
    record = CocoImage(
        id=image_id,
        file_name=f"{IMAGE_DIR}/{image_id:06d}.jpg",
        width=size[0],
        height=size[1],
        conditions=conditions,
    )
    objects = []
    for sb in scene.signboards:
        x, y, w, h = (round(v, 2) for v in sb.bbox)
        objects.append(
            CocoAnnotation(
                id=1,  # numbered in dataset order by the caller
                image_id=image_id,
                category_id=CATEGORY_ID,
                bbox=(x, y, w, h),
                area=round(w * h, 2),
                iscrowd=0,
                register_id=sb.register_id,
                occlusion=round(sb.occlusion, 3),
            )
        )
    return encode_jpeg(scene.image), record, objects


Rendered = list[tuple[CocoImage, list[CocoAnnotation]]]


def _render_chunk(
    root: Path,
    register: Register,
    plan: ConditionPlan,
    seed: int,
    indices: Sequence[int],
    size: tuple[int, int],
) -> Rendered:
    out: Rendered = []
    for index in indices:
        jpeg, record, objects = render_image(register, plan, seed, index, size)
        (root / record.file_name).write_bytes(jpeg)
        out.append((record, objects))
    return out


def _render_all(
    root: Path,
    register: Register,
    plan: ConditionPlan,
    seed: int,
    count: int,
    size: tuple[int, int],
    jobs: int,
) -> Generator[Rendered, None, None]:
    chunks = [range(i, min(i + _CHUNK, count)) for i in range(0, count, _CHUNK)]
    if jobs == 1 or len(chunks) == 1:
        for chunk in chunks:
            yield _render_chunk(root, register, plan, seed, chunk, size)
        return
    # spawn, not fork: forking a process whose OpenCV thread pool is running can deadlock.
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker
    )
    try:
        # map() yields in submission order, so the ground truth is ordered as with one job.
        n = len(chunks)
        yield from pool.map(
            _render_chunk, [root] * n, [register] * n, [plan] * n, [seed] * n, chunks, [size] * n
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker() -> None:
    """Worker processes already share the cores; OpenCV's own threads would only contend."""
    cv2.setNumThreads(1)


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise DatasetError(f"{out} is not empty; use --force to replace the dataset in it")
    if not (out / ANNOTATIONS_FILE).is_file():
        raise DatasetError(
            f"{out} is not empty and holds no {ANNOTATIONS_FILE}; --force replaces only a "
            "scene dataset, so remove that directory yourself if you mean it"
        )


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; a dataset already there goes only after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "dataset")
    try:
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old / "dataset", out)
        raise
    shutil.rmtree(old, ignore_errors=True)
