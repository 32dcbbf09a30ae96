"""Camera driver pieces without a capture thread: source parsing, measures, sorting, rates,
the thread-to-loop channel."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from labctl_drivers.camera import CameraSource, measure, parse_source
from labctl_drivers.camera.channel import Ended, Failed, FrameChannel
from labctl_drivers.camera.readers import natural_key
from labctl_drivers.camera.stats import RateWindow
from pydantic import ValidationError


def numpy_laplacian_var(grey: np.ndarray) -> float:
    """Variance of the 3×3 Laplacian with reflect-101 borders, in plain numpy."""
    p = np.pad(grey.astype(np.float64), 1, mode="reflect")  # numpy "reflect" = reflect-101
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return float(lap.var())


def test_parse_usb_index() -> None:
    s = parse_source("0")
    assert s.source == 0 and s.kind == "usb" and s.label == "camera 0"
    assert CameraSource.parse(" 3 ").source == 3
    assert CameraSource.model_validate({"source": 2}).kind == "usb"
    with pytest.raises(ValidationError, match="0 or more"):
        CameraSource.model_validate({"source": -1})


def test_parse_url_hides_password() -> None:
    s = parse_source("rtsp://admin:secret@10.0.0.7:8554/stream1")
    assert s.kind == "url"
    assert "secret" not in s.label and s.label == "rtsp://admin:***@10.0.0.7:8554/stream1"
    assert parse_source("http://cam.local/video.mjpg").kind == "url"
    with pytest.raises(ValidationError, match="unsupported URL scheme 'ftp'"):
        parse_source("ftp://host/x.mp4")


def test_parse_file_and_folder(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path / "clip.mp4")).kind == "file"
    assert parse_source("scenes/day/").kind == "folder"  # trailing slash, need not exist
    assert parse_source(str(tmp_path)).kind == "folder"  # an existing directory


def test_pacing_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="either fps or realtime"):
        parse_source("/v.mp4", fps=10, realtime=True)
    with pytest.raises(ValidationError, match="a stream delivers at its own rate"):
        parse_source("rtsp://h/x", fps=10)
    with pytest.raises(ValidationError, match="give fps"):
        parse_source("/frames/", realtime=True)
    with pytest.raises(ValidationError, match="extra"):
        parse_source("/v.mp4", colour="yes")


def test_overflow_policy_defaults() -> None:
    assert parse_source("0").drops_oldest
    assert parse_source("rtsp://h/x").drops_oldest
    assert not parse_source("/v.mp4").drops_oldest  # a file waits for its reader: no loss
    assert parse_source("/v.mp4", fps=30).drops_oldest  # paced like a live camera
    assert parse_source("/d/", realtime=False, fps=5).drops_oldest
    assert not parse_source("rtsp://h/x", overflow="block").drops_oldest


def test_measures_match_numpy() -> None:
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), (0, 0), 1.2)
    m = measure(img)
    # Independent grey: ITU-R BT.601 weights, rounded like an 8-bit conversion.
    b, g, r = (img[:, :, i].astype(np.float64) for i in range(3))
    grey_np = np.rint(0.114 * b + 0.587 * g + 0.299 * r)
    assert m.brightness == pytest.approx(grey_np.mean(), abs=0.02)
    assert m.contrast == pytest.approx(grey_np.std(), abs=0.02)
    assert m.sharpness == pytest.approx(numpy_laplacian_var(grey_np), rel=0.01)
    # On OpenCV's own grey image the numbers agree to rounding error.
    grey_cv = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert m.sharpness == pytest.approx(numpy_laplacian_var(grey_cv), rel=1e-9)
    assert m.sharpness == pytest.approx(cv2.Laplacian(grey_cv, cv2.CV_64F).var(), rel=1e-9)
    # Grey and BGRA input give the same measures as the BGR image.
    assert measure(grey_cv) == m
    assert measure(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)) == m


def test_sharpness_falls_with_blur() -> None:
    rng = np.random.default_rng(3)
    base = cv2.resize(
        rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), (300, 200), interpolation=0
    )
    values = [measure(cv2.GaussianBlur(base, (0, 0), s)).sharpness for s in (0.5, 1, 2, 4)]
    assert values == sorted(values, reverse=True) and values[0] > 10 * values[-1]


def test_natural_order() -> None:
    names = ["frame_10.png", "frame_2.png", "Frame_1.png", "frame_100.png", "a.png"]
    assert sorted(names, key=natural_key) == [
        "a.png",
        "Frame_1.png",
        "frame_2.png",
        "frame_10.png",
        "frame_100.png",
    ]


def test_rate_window() -> None:
    w = RateWindow(window_s=1.0)
    assert w.rate() == 0.0
    for i in range(50):
        w.add(i * 0.1)  # 10 per second for 5 s; only the last second counts
    assert w.rate() == pytest.approx(10.0)
    w.add(100.0)  # after a pause the old events leave the window
    assert w.rate() == 0.0


async def test_channel_drop_oldest_counts_and_keeps_newest() -> None:
    ch: FrameChannel[int] = FrameChannel(asyncio.get_running_loop(), 3, drop_oldest=True)

    def produce() -> None:
        for i in range(10):
            ch.put(i)
        ch.finish("done")

    t = threading.Thread(target=produce)
    t.start()
    t.join()
    got = [await ch.get(1.0) for _ in range(4)]
    assert got == [7, 8, 9, Ended("done")]
    assert ch.counts() == (0, 7)


async def test_channel_block_waits_for_room_and_close_releases_it() -> None:
    ch: FrameChannel[int] = FrameChannel(asyncio.get_running_loop(), 2, drop_oldest=False)
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.extend(ch.put(i) for i in range(5)))
    t.start()
    assert await ch.get(1.0) == 0
    assert await ch.get(1.0) == 1
    await asyncio.sleep(0.05)
    assert ch.counts() == (2, 0)  # the producer waits with items 2, 3 queued, 4 pending
    ch.close()
    await asyncio.to_thread(t.join, 2.0)
    assert not t.is_alive()
    assert results == [True, True, True, True, False]


async def test_channel_failure_after_queued_items_and_timeout() -> None:
    ch: FrameChannel[int] = FrameChannel(asyncio.get_running_loop(), 4, drop_oldest=True)
    with pytest.raises(TimeoutError):
        await ch.get(0.05)
    ch.put(1)
    ch.fail("camera 9 stopped")
    assert await ch.get(1.0) == 1
    assert await ch.get(1.0) == Failed("camera 9 stopped")
