"""The camera driver on real OpenCV: video files and image folders written by the tests,
real sockets for streams that refuse, stay silent or stall, real evidence files read back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import pytest
from labctl_drivers.camera import (
    Camera,
    CameraDriver,
    CameraError,
    CameraSource,
    EvidenceError,
    EvidenceRecorder,
    Frame,
    FrameSource,
    camera_driver_registry,
    read_evidence_index,
)

W, H = 320, 240
N = 12


def known_frames(n: int = N) -> list[np.ndarray]:
    """Frame k: brightness 6·k above the base, Gaussian blur σ = 0.6·k (sharp at k = 0);
    both repeat every 20 frames."""
    rng = np.random.default_rng(11)
    small = rng.integers(40, 140, (30, 40, 3), dtype=np.uint8)
    base = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)  # hard block edges
    out = []
    for k in range(n):
        j = k % 20
        img = base if j == 0 else cv2.GaussianBlur(base, (0, 0), 0.6 * j)
        out.append(cv2.add(img, np.full_like(img, 6 * j)))
    return out


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: float = 25.0):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (W, H))
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    return path


def reference(image: np.ndarray) -> tuple[float, float, float]:
    """Brightness, contrast, sharpness in plain numpy (BT.601 grey, reflect-101 Laplacian)."""
    b, g, r = (image[:, :, i].astype(np.float64) for i in range(3))
    grey = np.rint(0.114 * b + 0.587 * g + 0.299 * r)
    p = np.pad(grey, 1, mode="reflect")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return float(grey.mean()), float(grey.std()), float(lap.var())


def grey_mean(image: np.ndarray) -> float:
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).mean())


async def read_all(cam: Camera) -> list[Frame]:
    return [f async for f in cam.frames()]


async def collect(cam: Camera, into: list[Frame]) -> None:
    async for f in cam.frames():
        into.append(f)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "known.avi", known_frames())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "scenes"
    d.mkdir()
    for k, img in enumerate(known_frames()):
        cv2.imwrite(str(d / f"frame_{k}.png"), img)  # unpadded: frame_10 must follow frame_9
    (d / "frame_5.png").write_bytes(b"not a png at all")  # unreadable: counted and skipped
    (d / "notes.txt").write_text("not an image file; ignored")
    return d


def free_video_index() -> int:
    index = 63
    while Path(f"/dev/video{index}").exists():
        index += 1
    return index


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


class Server:
    """A loopback TCP server on its own thread; ``handle(conn)`` runs per connection."""

    def __init__(self, handle) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.handle = handle
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn, self.stop), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(2)


@pytest.fixture
def silent_server() -> Iterator[Server]:
    """Accepts connections and never says a word."""
    srv = Server(lambda conn, stop: stop.wait())
    yield srv
    srv.close()


@pytest.fixture
def stalling_mjpeg() -> Iterator[Server]:
    """An IP camera's MJPEG-over-HTTP stream: 5 frames (brightness 20·k), then silence."""
    jpegs = [cv2.imencode(".jpg", np.full((H, W, 3), 40 + 20 * k, np.uint8))[1] for k in range(5)]

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.0 200 OK\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            )
            for j in jpegs:
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                conn.sendall(head % len(j) + j.tobytes() + b"\r\n")
                time.sleep(0.02)
        except OSError:
            return
        stop.wait()  # the camera "freezes": connection open, no more frames

    srv = Server(handle)
    yield srv
    srv.close()


# -- files and folders -------------------------------------------------------------------


async def test_video_file_every_frame_in_order_measured_then_clean_end(video: Path) -> None:
    written = known_frames()
    async with Camera(CameraSource.parse(str(video))) as cam:
        assert cam.info is not None
        assert (cam.info.kind, cam.info.width, cam.info.height) == ("file", W, H)
        assert cam.info.frame_count == N and cam.info.fps == pytest.approx(25.0)
        frames = await read_all(cam)
        assert cam.end is not None and cam.end.reason == f"end of file: {N} frames"
    assert not cam.thread_alive

    assert [f.index for f in frames] == list(range(N))
    mono = [f.mono_ts for f in frames]
    wall = [f.wall_ts for f in frames]
    assert all(a < b for a, b in itertools.pairwise(mono))
    assert all(a <= b for a, b in itertools.pairwise(wall))
    assert abs(wall[0] - time.time()) < 60
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        brightness, contrast, sharpness = reference(f.image)  # the same decoded image
        assert f.measures.brightness == pytest.approx(brightness, abs=0.02)
        assert f.measures.contrast == pytest.approx(contrast, abs=0.02)
        assert f.measures.sharpness == pytest.approx(sharpness, rel=0.01)
        # ... and the image written before the codec: MJPG keeps the mean within 2 levels.
        assert f.measures.brightness == pytest.approx(grey_mean(written[f.index]), abs=2.0)
    sharp = [f.measures.sharpness for f in frames]
    assert all(a > b for a, b in itertools.pairwise(sharp)), sharp  # blur grows
    assert sharp[0] > 50 * sharp[-1]

    stats = cam.end.stats
    assert (stats.captured, stats.delivered, stats.dropped, stats.read_errors) == (N, N, 0, 0)
    assert stats.queued == 0 and stats.fps > 0 and stats.capture_fps > 0


async def test_image_folder_natural_order_unreadable_file_counted_and_skipped(
    folder: Path,
) -> None:
    written = known_frames()
    async with Camera(CameraSource.parse(str(folder) + "/")) as cam:
        assert cam.info is not None and cam.info.frame_count == N  # notes.txt is not an image
        frames = await read_all(cam)
        assert cam.end is not None
        assert cam.end.reason == f"end of folder: {N - 1} images read, 1 unreadable"
    expected = [k for k in range(N) if k != 5]  # frame_5.png is garbage
    assert [f.index for f in frames] == expected
    assert [f.name for f in frames] == [f"frame_{k}.png" for k in expected]
    for f in frames:  # PNG is lossless: the measures are those of the written image
        assert np.array_equal(f.image, written[f.index])
        brightness, contrast, sharpness = reference(written[f.index])
        assert f.measures.brightness == pytest.approx(brightness, abs=0.02)
        assert f.measures.contrast == pytest.approx(contrast, abs=0.02)
        assert f.measures.sharpness == pytest.approx(sharpness, rel=0.01)
    stats = cam.end.stats
    assert (stats.captured, stats.delivered, stats.read_errors) == (N - 1, N - 1, 1)
    assert stats.last_error is not None and "frame_5.png" in stats.last_error
    assert not cam.thread_alive


async def test_realtime_pacing_follows_the_files_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "fast.avi", known_frames(10), fps=50.0)
    async with Camera(CameraSource.parse(str(path), realtime=True)) as cam:
        t0 = time.monotonic()
        frames = await read_all(cam)
        elapsed = time.monotonic() - t0
    assert len(frames) == 10
    gaps = np.diff([f.mono_ts for f in frames])
    assert np.median(gaps) == pytest.approx(0.02, abs=0.006)
    assert elapsed >= 9 * 0.02 * 0.9


async def test_slow_consumer_drops_oldest_and_gets_the_latest(tmp_path: Path) -> None:
    n = 60
    path = write_video(tmp_path / "live.avi", known_frames(n))
    src = CameraSource.parse(str(path), fps=200, queue_frames=2)  # paced: behaves live
    ages: list[float] = []
    got: list[int] = []
    async with Camera(src) as cam:
        async for f in cam.frames():
            ages.append(time.monotonic() - f.mono_ts)
            got.append(f.index)
            await asyncio.sleep(0.03)  # 33 frames/s against 200
        stats = cam.stats()
    assert cam.end is not None
    assert stats.captured == n and stats.delivered == len(got)
    assert stats.dropped > 20 and stats.delivered + stats.dropped == n
    assert got == sorted(got) and len(set(got)) == len(got)
    assert got[-1] == n - 1  # the newest frame is never the one dropped
    # No latency builds up: without drops the last frame would wait ~1.8 s.
    assert max(ages) < 0.5, ages


async def test_closing_mid_stream_releases_a_waiting_reader(video: Path) -> None:
    cam = Camera(CameraSource.parse(str(video), queue_frames=1))  # block: reader waits
    await cam.open()
    async for f in cam.frames():
        assert f.index == 0
        break
    await asyncio.sleep(0.05)
    assert cam.thread_alive  # blocked on the full queue
    await cam.close()
    assert not cam.thread_alive


# -- sources that fail -------------------------------------------------------------------


async def test_rtsp_closed_port_fails_fast_with_the_reason() -> None:
    port = closed_port()
    cam = Camera(CameraSource.parse(f"rtsp://127.0.0.1:{port}/x", open_timeout_s=3))
    t0 = time.monotonic()
    with pytest.raises(CameraError) as err:
        await cam.open()
    assert time.monotonic() - t0 < 3 + 1.0
    assert str(err.value) == (
        f"cannot open rtsp://127.0.0.1:{port}/x: "
        f"connection refused by 127.0.0.1:{port} (nothing listens there)"
    )
    assert not cam.thread_alive


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
async def test_silent_server_gives_up_within_the_open_timeout(
    silent_server: Server, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server.port}/stream"
    cam = Camera(CameraSource.parse(url, open_timeout_s=1.5))
    t0 = time.monotonic()
    with pytest.raises(CameraError) as err:
        async with cam:
            pytest.fail("a silent server must not open")
    elapsed = time.monotonic() - t0
    assert str(err.value) == f"cannot open {url}: no answer within 1.5 s"
    assert 1.4 <= elapsed < 1.5 + 1.0, elapsed
    assert silent_server.conns  # FFmpeg did connect: the silence was what timed out
    assert not cam.thread_alive


async def test_live_stream_that_stops_delivering_fails_after_read_timeout(
    stalling_mjpeg: Server,
) -> None:
    url = f"http://127.0.0.1:{stalling_mjpeg.port}/video.mjpg"
    got: list[Frame] = []
    async with Camera(CameraSource.parse(url, read_timeout_s=1.0)) as cam:
        assert cam.info is not None and cam.info.kind == "url" and cam.info.frame_count is None
        with pytest.raises(CameraError) as err:
            await collect(cam, got)
        stalled_for = time.monotonic() - got[-1].mono_ts
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert [round(f.measures.brightness) for f in got] == [40, 60, 80, 100, 120]
    assert str(err.value).startswith(f"{url} stopped delivering: no frame within 1 s")
    assert 0.9 <= stalled_for < 1.0 + 1.0
    assert cam.stats().read_errors >= 1
    assert not cam.thread_alive


async def test_missing_usb_camera_file_and_empty_folder(tmp_path: Path) -> None:
    index = free_video_index()
    with pytest.raises(CameraError, match=rf"cannot open camera {index}: no such device"):
        await Camera(index).open()
    with pytest.raises(CameraError, match=r"missing\.mp4: no such file"):
        await Camera(str(tmp_path / "missing.mp4")).open()
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(CameraError, match=r"fake\.mp4: not a video"):
        await Camera(str(tmp_path / "fake.mp4")).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="empty/: no image files in it"):
        await Camera(str(tmp_path / "empty") + "/").open()


# -- evidence ----------------------------------------------------------------------------


async def test_evidence_jpeg_sequence_with_index(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    seen: list[Frame] = []
    async with (
        Camera(CameraSource.parse(str(folder))) as cam,
        EvidenceRecorder(out, format="jpeg", queue_frames=2) as rec,
    ):
        async for f in cam.frames():
            seen.append(f)
            await rec.write(f)
    assert rec.summary is not None and rec.summary.frames == len(seen) == N - 1
    entries = read_evidence_index(out)
    assert len(entries) == len(seen)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.jsonl", *(f"frame_{f.index:06d}.jpg" for f in seen)]
    )  # nothing partial left behind
    for e, f in zip(entries, seen, strict=True):
        assert (e.index, e.mono_ts, e.wall_ts, e.name) == (f.index, f.mono_ts, f.wall_ts, f.name)
        assert e.sharpness == f.measures.sharpness and (e.width, e.height) == (W, H)
        img = cv2.imread(str(out / e.file))
        assert img is not None and img.shape == (H, W, 3)
        assert grey_mean(img) == pytest.approx(e.brightness, abs=2.0)
    with pytest.raises(EvidenceError, match="already holds a recording"):
        await EvidenceRecorder(out).open()


@pytest.mark.parametrize(("codec", "ext"), [("MJPG", ".avi"), ("mp4v", ".mp4")])
async def test_evidence_video_is_playable_with_the_right_frame_count(
    video: Path, tmp_path: Path, codec: str, ext: str
) -> None:
    out = tmp_path / f"ev-{codec}"
    async with Camera(CameraSource.parse(str(video))) as cam:
        rec = EvidenceRecorder(out, format="video", codec=codec, fps=25)  # type: ignore[arg-type]
        await rec.open()
        async for f in cam.frames():
            await rec.write(f)
        summary = await rec.close()
    assert summary.video == out / f"evidence{ext}" and summary.frames == N
    entries = read_evidence_index(out)
    assert [e.position for e in entries] == list(range(N))
    assert {e.file for e in entries} == {f"evidence{ext}"}
    cap = cv2.VideoCapture(str(summary.video))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N
    decoded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded.append(img)
    cap.release()
    assert len(decoded) == N
    for img, e in zip(decoded, entries, strict=True):
        assert grey_mean(img) == pytest.approx(e.brightness, abs=3.0)
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.jsonl", f"evidence{ext}"])


async def test_evidence_video_rejects_a_frame_of_another_size(tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.zeros((H, W, 3), np.uint8))
    cv2.imwrite(str(d / "b.png"), np.zeros((H // 2, W // 2, 3), np.uint8))
    rec = EvidenceRecorder(tmp_path / "ev", format="video")
    await rec.open()
    async with Camera(str(d)) as cam:
        async for f in cam.frames():
            await rec.write(f)
    with pytest.raises(EvidenceError, match=r"frame 1 is 160×120 but the video is 320×240"):
        await rec.close()
    assert not (tmp_path / "ev" / "index.jsonl").exists()  # only .part files remain


# -- registration --------------------------------------------------------------------------


async def test_camera_is_a_registered_lab_driver(video: Path) -> None:
    (ep,) = [e for e in entry_points(group="labctl.drivers") if e.name == "camera"]
    assert ep.load() is CameraDriver
    assert camera_driver_registry().get("camera") is CameraDriver
    driver = CameraDriver.from_options({"source": str(video), "read_timeout_s": 2})
    cam = driver.camera()
    assert isinstance(cam, FrameSource)
    async with cam:
        assert len(await read_all(cam)) == N
    with pytest.raises(ValueError, match=r"bad options for driver 'camera': fps: "):
        CameraDriver.from_options({"source": str(video), "fps": -1})
