"""The AI box's frame intake: the drop-oldest queue, frame ids from topics, JPEG decoding."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
from labctl_sim.aibox.frames import Frame, FrameQueue, decode, frame_from


def _frame(i: int) -> Frame:
    return Frame(f"f{i}", b"x", float(i))


async def test_a_full_queue_drops_the_oldest_frame() -> None:
    q = FrameQueue(2)
    assert q.put(_frame(1)) and q.put(_frame(2))
    assert not q.put(_frame(3))  # f1 made room
    assert len(q) == 2
    assert [(await q.get()).id for _ in range(2)] == ["f2", "f3"]


async def test_get_waits_for_a_frame() -> None:
    q = FrameQueue(1)
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.put(_frame(7))
    assert (await asyncio.wait_for(waiter, 1)).id == "f7"


def test_queue_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue(0)


@pytest.mark.parametrize(
    ("topic", "payload", "frame"),
    [
        ("lab/v1/visionx/s1/stim/000001", b"jpeg", "000001"),
        ("lab/v1/visionx/s1/stim/run-3:frame_7.a", b"jpeg", "run-3:frame_7.a"),
        ("lab/v1/visionx/s1/stim/bad id", b"jpeg", None),
        ("lab/v1/visionx/s1/stim/" + "x" * 65, b"jpeg", None),
        ("lab/v1/visionx/s1/stim/ok", "text", None),
    ],
)
def test_frame_ids_come_from_the_topic(topic: str, payload: object, frame: str | None) -> None:
    got = frame_from(topic, payload)
    assert (got.id if got else None) == frame


def test_decode_reads_jpeg_and_refuses_everything_else() -> None:
    img = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(img, (5, 5), (30, 30), (0, 200, 255), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    decoded = decode(buf.tobytes(), 1 << 20)
    assert decoded is not None and decoded.shape == (48, 64, 3)
    assert np.abs(decoded.astype(int) - img.astype(int)).mean() < 4
    assert decode(b"", 1 << 20) is None
    assert decode(b"\xff\xd8 not really a jpeg" * 10, 1 << 20) is None
    assert decode(buf.tobytes(), 100) is None  # over the size limit
