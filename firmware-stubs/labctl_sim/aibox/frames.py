"""The box's frame intake: a bounded queue that drops the oldest frame, and JPEG decoding."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from labctl_sim.aibox.features import Image

FRAME_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""Frame ids as the lab puts them in ``stim/{frame}`` topics."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A stimulus as received: its id, the encoded image, and when it arrived (monotonic)."""

    id: str
    payload: bytes
    arrived: float


class FrameQueue:
    """Frames waiting for the detector. A live camera box wants the newest frames: when full,
    :meth:`put` drops the oldest."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[Frame] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, frame: Frame) -> bool:
        """Queue ``frame``; False when an older frame had to make room for it."""
        room = len(self._items) < self.capacity
        if not room:
            self._items.popleft()
        self._items.append(frame)
        self._ready.set()
        return room

    async def get(self) -> Frame:
        """The oldest queued frame, waiting for one if needed."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


def frame_from(topic: str, payload: object, arrived: float | None = None) -> Frame | None:
    """The frame a ``…/stim/{frame}`` message carries; None when the id is invalid or the
    payload is not bytes."""
    frame_id = topic.rsplit("/", 1)[-1]
    if not FRAME_ID_RE.match(frame_id) or not isinstance(payload, bytes | bytearray):
        return None
    return Frame(frame_id, bytes(payload), time.monotonic() if arrived is None else arrived)


def decode(payload: bytes, max_bytes: int) -> Image | None:
    """The BGR image in ``payload`` (JPEG, PNG, … whatever OpenCV reads); None for anything
    else: empty, oversized, or not an image. Blocking: call it off the event loop."""
    if not payload or len(payload) > max_bytes:
        return None
    try:
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if image is None or image.size == 0:
        return None
    return np.asarray(image, np.uint8)
