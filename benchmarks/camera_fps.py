#!/usr/bin/env python3
"""Frames per second the camera driver sustains on 1920×1080 video, with condition measures.

Writes a 1080p video (a textured street-like scene panning across the frame, with fresh
sensor noise in every frame, so the decoder has real work) into a temporary directory, then
reads it in the same run, several times each:

* ``cv2 read loop``: plain ``cv2.VideoCapture.read()`` until the end, nothing else (baseline);
* ``cv2 read + measures``: the same loop calling ``measure()`` on every frame, on one thread;
* ``labctl Camera``: the driver: capture thread (read, decode, measure), bounded queue,
  ``async for frame in camera.frames()`` on the event loop, the consumer draining as fast as it
  can (an unpaced file never drops: its queue blocks the reader).

A second table prices the measures alone on one 1080p frame: the driver's full-resolution
``measure()`` (16-bit Laplacian), the textbook ``cv2.Laplacian(CV_64F).var()`` version, and
both on a half-size copy.

Run: ``.venv/bin/python benchmarks/camera_fps.py [--frames 300] [--repeats 3] [--codec mp4v]``.
Exit status 0 when the driver delivered every frame at 30 frames/s or more (a 1080p30 camera
in real time), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import load_note, table, use_repo_imports

use_repo_imports()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from labctl_drivers.camera import Camera, CameraSource, measure  # noqa: E402

W, H = 1920, 1080
REALTIME_FPS = 30.0
EXTENSIONS = {"mp4v": ".mp4", "MJPG": ".avi"}


def write_video(path: Path, frames: int, codec: str) -> None:
    """A panning textured scene with per-frame noise (σ ≈ 3 grey levels)."""
    rng = np.random.default_rng(2026)
    blocks = rng.integers(30, 220, (90, 160, 3), dtype=np.uint8)
    scene = cv2.resize(blocks, (W + 8 * frames, H + 200), interpolation=cv2.INTER_NEAREST)
    scene = cv2.GaussianBlur(scene, (0, 0), 1.5)
    fine = rng.integers(0, 40, scene.shape, dtype=np.uint8)
    scene = cv2.add(scene, fine)
    noise = [rng.integers(0, 7, (H, W, 3), dtype=np.uint8) for _ in range(8)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), 30.0, (W, H))
    if not writer.isOpened():
        raise SystemExit(f"cannot write a {codec} video to {path}")
    for k in range(frames):
        view = scene[100 + (k % 50) : 100 + (k % 50) + H, 8 * k : 8 * k + W]
        writer.write(cv2.subtract(cv2.add(view, noise[k % 8]), noise[(k + 3) % 8]))
    writer.release()


def cv2_loop(path: Path, with_measures: bool) -> tuple[int, float, float]:
    """Frames read, wall seconds, process CPU seconds."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if with_measures:
            measure(img)
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cap.release()
    return n, wall, cpu


async def driver_run(path: Path) -> tuple[int, float, float, int]:
    """Frames delivered, wall seconds (open to end), CPU seconds, frames dropped."""
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    async with Camera(CameraSource.parse(str(path))) as cam:
        async for _frame in cam.frames():
            n += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        dropped = cam.stats().dropped
    return n, wall, cpu, dropped


def time_per_call(fn: Callable[[], object], repeat: int = 40) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def measure_costs(path: Path) -> list[list[str]]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    ok, img = cap.read()
    cap.release()
    assert ok
    half = cv2.resize(img, (W // 2, H // 2), interpolation=cv2.INTER_AREA)

    def textbook(image: np.ndarray) -> tuple[float, float, float]:
        g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return float(g.mean()), float(g.std()), float(cv2.Laplacian(g, cv2.CV_64F).var())

    full = measure(img)
    ref = textbook(img)
    assert abs(full.sharpness - ref[2]) <= 1e-9 * ref[2], (full, ref)  # same numbers
    rows = []
    for name, fn, sharp in (
        ("measure() full res (driver)", lambda: measure(img), full.sharpness),
        ("textbook CV_64F + numpy full res", lambda: textbook(img), ref[2]),
        ("measure() on a ½-size copy", lambda: measure(half), measure(half).sharpness),
        ("resize ½ + measure()", lambda: measure(cv2.resize(img, (W // 2, H // 2))), None),
    ):
        s = time_per_call(fn)
        rows.append(
            [name, f"{s * 1000:.2f}", f"{1 / s:,.0f}", "-" if sharp is None else f"{sharp:.1f}"]
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codec", choices=sorted(EXTENSIONS), default="mp4v")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="camera-fps-") as tmp:
        path = Path(tmp) / f"scene{EXTENSIONS[args.codec]}"
        t0 = time.perf_counter()
        write_video(path, args.frames, args.codec)
        print(
            f"wrote {args.frames} frames {W}×{H} {args.codec} "
            f"({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s; "
            f"{load_note()}; OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads"
        )
        runs: dict[str, list[tuple[int, float, float]]] = {
            "cv2 read loop (baseline)": [],
            "cv2 read + measures, one thread": [],
            "labctl Camera (thread + measures + asyncio)": [],
        }
        names = list(runs)
        drops = 0
        for _ in range(args.repeats):  # interleaved, so machine load hits every row alike
            runs[names[0]].append(cv2_loop(path, with_measures=False))
            runs[names[1]].append(cv2_loop(path, with_measures=True))
            n, wall, cpu, dropped = asyncio.run(driver_run(path))
            runs[names[2]].append((n, wall, cpu))
            drops += dropped
        rows = []
        medians: dict[str, float] = {}
        for name, results in runs.items():
            fps = [n / wall for n, wall, _ in results]
            cpu_ms = [cpu / n * 1000 for n, _, cpu in results]
            medians[name] = statistics.median(fps)
            rows.append(
                [
                    name,
                    f"{min(n for n, _, _ in results)}",
                    f"{medians[name]:,.0f}",
                    f"{min(fps):,.0f}–{max(fps):,.0f}",
                    f"{1000 / medians[name]:.2f}",
                    f"{statistics.median(cpu_ms):.2f}",
                ]
            )
        print()
        print(
            table(
                ["pipeline", "frames", "fps (median)", "fps range", "ms/frame", "CPU ms/frame"],
                rows,
                [False, True, True, True, True, True],
            )
        )
        print()
        print(
            table(
                ["measures on one 1920×1080 frame", "ms", "frames/s", "sharpness"],
                measure_costs(path),
                [False, True, True, True],
            )
        )

    driver = medians[names[2]]
    delivered_all = all(n == args.frames for n, _, _ in runs[names[2]]) and drops == 0
    print()
    print(
        f"driver / baseline: {driver / medians[names[0]]:.2f}; "
        f"every frame delivered, none dropped: {'yes' if delivered_all else 'NO'}; "
        f"{driver:,.0f} fps against {REALTIME_FPS:.0f} fps real time "
        f"({'met' if driver >= REALTIME_FPS else 'MISSED'})"
    )
    return 0 if delivered_all and driver >= REALTIME_FPS else 1


if __name__ == "__main__":
    sys.exit(main())
