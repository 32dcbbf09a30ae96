"""The ``replay`` stimulus: present each frame of a scene dataset to the devices under test.

:class:`FramePresenter` presents one frame at a time (:meth:`FramePresenter.present_frame`,
shared with the ``live`` stimulus of :mod:`labctl.trial.live`). For each image the presenter
records when it was presented (a :class:`~labctl.observations.FramePresented`, before the
publish, so latency includes the transfer), publishes the JPEG bytes on each device's
``…/stim/{frame}`` topic, and waits until every device has answered that frame or the deadline
passed. Answers that come later are the evaluator's to count as missed deadlines; the presenter
does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from labctl.bus.edge import EdgeResult
from labctl.observations import FramePresented, Observation
from labctl.protocol import topics
from labctl.readings import DeviceRef
from labctl.trial.spec import ReplayStimulus

MAX_FRAME_BYTES = 8 * 1024 * 1024
"""Larger images are refused: the broker's message size limit and the devices' memory."""


class ReplayError(RuntimeError):
    """The dataset cannot be presented; the message says why."""


@dataclass(frozen=True, slots=True)
class DatasetFrame:
    """One image of a dataset, as the presenter needs it."""

    image_id: int
    path: Path


def dataset_frames(dataset: Path) -> list[DatasetFrame]:
    """The images of a ``labctl scenes make`` dataset, in id order."""
    ann = dataset / "annotations.json"
    try:
        doc = orjson.loads(ann.read_bytes())
        images = [(int(im["id"]), str(im["file_name"])) for im in doc["images"]]
    except FileNotFoundError as exc:
        raise ReplayError(f"{ann}: no such file (make one with `labctl scenes make`)") from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{ann}: not a COCO annotations file ({exc})") from exc
    out = []
    root = dataset.resolve()
    for image_id, name in sorted(images):
        path = (dataset / name).resolve()
        if not path.is_relative_to(root):
            raise ReplayError(f"{ann}: image {image_id} lies outside the dataset: {name!r}")
        out.append(DatasetFrame(image_id, path))
    return out


class Publish(Protocol):
    """The bus's publish (``MqttBus.publish``)."""

    async def __call__(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish and wait for the broker's acknowledgement."""


@dataclass
class FramePresenter:
    """Presents frames and waits for answers; a controller listener tells it who answered."""

    publish: Publish
    observe: Callable[[Observation], None]
    """Hands an observation to the evaluator (the run's router)."""
    listeners: list[Callable[[EdgeResult], None]]
    """The controller's listeners, which the presenter joins while presenting."""
    devices: Sequence[DeviceRef]
    run_id: str
    event: Callable[[str], None]
    check: Callable[[], None]
    presented: int = 0
    _waiting: dict[str, set[DeviceRef]] = field(default_factory=dict)
    _answered: asyncio.Event = field(default_factory=asyncio.Event)

    def _listen(self, result: EdgeResult) -> None:
        for e in result.detections:
            pending = self._waiting.get(e.detections.frame)
            if pending is not None:
                pending.discard(e.device)
                if not pending:
                    self._answered.set()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Follow the devices' answers while presenting (joins the controller's listeners)."""
        self.listeners.append(self._listen)
        try:
            yield
        finally:
            self.listeners.remove(self._listen)
            self._waiting.clear()

    async def present(self, dataset: Path, stim: ReplayStimulus) -> None:
        """Present every frame (or the first ``stim.limit``) of ``dataset``."""
        if not self.devices:
            raise ReplayError("replay: no device under test (role 'dut') to present frames to")
        if stim.via != "mqtt":
            raise ReplayError("replay via http is not available yet; use via: mqtt")
        frames = await asyncio.to_thread(dataset_frames, dataset)
        if stim.limit is not None:
            frames = frames[: stim.limit]
        self.event(
            f"presenting {len(frames)} frames to {len(self.devices)} device(s), "
            f"deadline {stim.deadline:g} s"
        )
        async with self.listening():
            for f in frames:
                self.check()
                started = time.monotonic()
                payload = await asyncio.to_thread(f.path.read_bytes)
                frame = f"{self.run_id}.{f.image_id}"
                await self.present_frame(frame, f.image_id, payload, stim.deadline)
                if stim.interval is not None:
                    rest = stim.interval - (time.monotonic() - started)
                    if rest > 0:
                        await asyncio.sleep(rest)

    async def present_frame(
        self, frame_id: str, image_id: int, jpeg: bytes, deadline: float
    ) -> None:
        """Present one frame (inside :meth:`listening`): record a
        :class:`~labctl.observations.FramePresented`, publish ``jpeg`` to every device, and
        wait until each answered ``frame_id`` or ``deadline`` seconds passed."""
        if len(jpeg) > MAX_FRAME_BYTES:
            raise ReplayError(f"frame {frame_id}: {len(jpeg)} bytes; frames are limited to 8 MiB")
        self._waiting[frame_id] = set(self.devices)
        self._answered.clear()
        self.observe(FramePresented(frame_id, image_id, time.time(), deadline))
        for ref in self.devices:
            await self.publish(topics.stimulus(ref.vendor, ref.device, frame_id), jpeg, qos=1)
        self.presented += 1
        try:
            await asyncio.wait_for(self._answered.wait(), deadline)
        except TimeoutError:
            pass  # the evaluator counts what is missing or late
        finally:
            self._waiting.pop(frame_id, None)
