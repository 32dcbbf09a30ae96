"""The ``live`` stimulus: a lab camera watches a physical scene and the controller presents what
it sees to the devices under test, frame by frame.

The camera is read by the camera driver (:mod:`labctl_drivers.camera`: USB index, stream URL,
video file or image folder) on its own thread, which also measures each frame's brightness,
contrast and sharpness. For each frame the presentation decides:

* **selected?** Only frames whose index is a multiple of ``every`` are considered.
* **ground truth?** The annotation file (COCO) maps camera frame indices to its images: an
  image's ``frame_index`` field when the file has one, otherwise the image's ``id`` *is* the
  frame index. A frame without ground truth is read, counted and *not presented*: a device's
  answer to it could not be scored, and presenting it would only make the devices slower on
  the frames that are.
* **presented:** the frame is encoded as JPEG (off the event loop) and presented exactly like a
  replayed frame (:meth:`~labctl.trial.replay.FramePresenter.present_frame`), with the
  annotation's image id; its measured conditions go to the evaluator as a
  :class:`~labctl.observations.FrameConditions`, and with ``record: true`` the frame is kept as
  evidence (JPEG sequence and ``index.jsonl``, :class:`~labctl_drivers.camera.EvidenceRecorder`).

The presentation ends after ``frames`` presented frames, after ``duration`` (wall time from
the first frame), or once the camera is past the last annotated frame, whichever comes first.
A source that cannot be opened, stops delivering, or ends (a file, a folder) before any of
these is a :class:`LiveError` in words, which the runner records as a rig fault.

Frame ids are ``{run}.live{step}-{index}``: unique within the run, and they name the camera
frame they showed (the evidence files are ``frame_{index:06d}.jpg``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from labctl.observations import FrameConditions
from labctl.trial.datasets import annotation_file
from labctl.trial.replay import FramePresenter
from labctl.trial.spec import LiveStimulus

if TYPE_CHECKING:
    from labctl_drivers.camera import CameraSource, Frame, FrameSource

JPEG_QUALITY = 90
"""Quality of the JPEG a frame is presented as (the scene generator's quality)."""


class LiveError(RuntimeError):
    """The camera frames cannot be presented; the message says why."""


class _Image(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: StrictInt
    frame_index: StrictInt | None = Field(default=None, ge=0)


class _Annotations(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    images: list[_Image]


def frame_truth(path: Path) -> dict[int, int]:
    """Camera frame index → annotation image id, from a COCO file (see the module docstring).
    Raises LiveError in words."""
    try:
        doc = _Annotations.model_validate(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise LiveError(f"live annotations: {path}: no such file") from None
    except OSError as exc:
        raise LiveError(f"live annotations: {path}: cannot read: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise LiveError(f"live annotations: {path}: not JSON ({exc})") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"]))
        raise LiveError(f"live annotations: {path}: {where}: {err['msg']}") from None
    keyed = any(im.frame_index is not None for im in doc.images)
    out: dict[int, int] = {}
    for im in doc.images:
        index = im.frame_index if keyed else im.id
        if index is None:
            continue  # with frame_index in use, an image without one shows no camera frame
        if index in out:
            field = "frame_index" if keyed else "id"
            raise LiveError(
                f"live annotations: {path}: two images have {field} {index}; "
                "each camera frame has one image"
            )
        if index >= 0:
            out[index] = im.id
    if not out:
        raise LiveError(
            f"live annotations: {path}: no image names a camera frame "
            "(images[].frame_index, or images[].id ≥ 0)"
        )
    return out


def camera_source(stim: LiveStimulus, spec_dir: Path) -> CameraSource:
    """The camera driver's source for ``stim.camera`` (paths relative to the spec's folder);
    LiveError in words."""
    from labctl_drivers.camera import CameraSource

    cam: str | int = stim.camera
    if isinstance(cam, str) and not cam.strip().isdigit() and "://" not in cam:
        path = Path(cam).expanduser()
        if not path.is_absolute():
            folder = cam.endswith(("/", "\\"))
            cam = str(spec_dir / path) + ("/" if folder else "")
    options: dict[str, Any] = {"source": cam}
    if stim.fps is not None:
        options["fps"] = stim.fps
    try:
        return CameraSource.model_validate(options)
    except ValidationError as exc:
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise LiveError(f"live: camera {stim.camera!r}: {why}") from None


def encode_jpeg(image: Any) -> bytes:
    """The frame as the JPEG presented to devices (blocking: call it off the loop)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise LiveError("live: a camera frame could not be encoded as JPEG")
    return bytes(buf.tobytes())


@dataclass(frozen=True, slots=True)
class LiveSummary:
    """What one live presentation did."""

    read: int
    """Frames read from the camera."""
    presented: int
    unannotated: int
    """Selected frames (index a multiple of ``every``) without ground truth: not presented."""
    missed: int
    """Annotated frames the camera never delivered up to the last frame read (a live camera
    drops the oldest frames while the devices are slower than it)."""
    ended: str
    """Why the presentation stopped, in words."""
    evidence: Path | None


def _measured(frame: Frame) -> Mapping[str, float]:
    m = frame.measures
    return {"brightness": m.brightness, "contrast": m.contrast, "sharpness": m.sharpness}


async def present_live(
    presenter: FramePresenter,
    stim: LiveStimulus,
    *,
    spec_dir: Path,
    step: int,
    evidence_dir: Path | None = None,
    open_camera: Callable[[CameraSource], FrameSource] | None = None,
) -> LiveSummary:
    """Present the annotated frames of ``stim.camera`` through ``presenter`` (see the module
    docstring). ``step`` numbers the run's live steps (frame ids); evidence is recorded into
    ``evidence_dir`` when ``stim.record``. Raises LiveError in words."""
    from labctl_drivers.camera import Camera, CameraError, EvidenceError, EvidenceRecorder

    if not presenter.devices:
        raise LiveError("live: no device under test (role 'dut') to present frames to")
    path = annotation_file((spec_dir / stim.annotations).resolve())
    truth = await asyncio.to_thread(frame_truth, path)
    wanted = sorted(i for i in truth if i % stim.every == 0)
    if not wanted:
        raise LiveError(
            f"live: no annotated frame index in {path} is a multiple of every: {stim.every}"
        )
    if stim.frames is not None and stim.frames > len(wanted):
        which = f" with an index divisible by every: {stim.every}" if stim.every > 1 else ""
        raise LiveError(
            f"live: frames: {stim.frames} asked for, but {path} has ground truth for "
            f"{len(wanted)} frames{which}"
        )
    if stim.record and evidence_dir is None:
        raise LiveError("live: record: true, but this runner has no run directory to record to")
    source = camera_source(stim, spec_dir)
    camera = (open_camera or Camera)(source)
    last = wanted[-1]
    read = presented = unannotated = 0
    seen = -1
    ended = ""
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(camera.close)
            info = await camera.open()
            recorder = None
            if stim.record:
                assert evidence_dir is not None
                recorder = await stack.enter_async_context(
                    EvidenceRecorder(evidence_dir, format="jpeg")
                )
            size = f"{info.width}×{info.height}" if info.width and info.height else "size unknown"
            presenter.event(
                f"live: {info.label} open ({info.backend}, {size}); presenting the {len(wanted)} "
                f"annotated frames of {path.name} to {len(presenter.devices)} device(s), "
                f"deadline {stim.deadline:g} s"
            )
            await stack.enter_async_context(presenter.listening())
            started: float | None = None
            async for frame in camera.frames():
                presenter.check()
                read += 1
                now = time.monotonic()
                started = now if started is None else started
                if stim.duration is not None and now - started >= stim.duration:
                    ended = f"duration {stim.duration:g} s reached"
                    break
                seen = frame.index
                selected = frame.index % stim.every == 0
                image_id = truth.get(frame.index) if selected else None
                if image_id is not None:
                    jpeg = await asyncio.to_thread(encode_jpeg, frame.image)
                    if recorder is not None:
                        await recorder.write(frame)
                    presenter.observe(FrameConditions(image_id, _measured(frame)))
                    frame_id = f"{presenter.run_id}.live{step}-{frame.index}"
                    await presenter.present_frame(frame_id, image_id, jpeg, stim.deadline)
                    presented += 1
                    if stim.frames is not None and presented >= stim.frames:
                        ended = f"{presented} frames presented"
                        break
                elif selected:
                    unannotated += 1
                if frame.index >= last:
                    ended = f"past the last annotated frame ({last})"
                    break
            else:
                end = camera.end
                why = end.reason if end is not None else "the source closed"
                raise LiveError(
                    f"live: {source.label} ended early, after frame {seen} ({why}), with "
                    f"{presented} frames presented; the annotations go to frame {last}"
                    + (f" and {stim.frames} frames were asked for" if stim.frames else "")
                )
            stats = camera.stats()
    except CameraError as exc:
        raise LiveError(f"live: {exc}") from None
    except EvidenceError as exc:
        raise LiveError(f"live: evidence: {exc}") from None
    missed = sum(1 for i in wanted if i <= seen) - presented
    evidence = evidence_dir if stim.record else None
    presenter.event(
        f"live: {ended}: {presented} frames presented of {read} read "
        f"({unannotated} without ground truth, {missed} annotated frames missed; camera "
        f"dropped {stats.dropped}, {stats.read_errors} read errors)"
        + (f"; evidence in {evidence}" if evidence is not None else "")
    )
    return LiveSummary(read, presented, unannotated, missed, ended, evidence)
