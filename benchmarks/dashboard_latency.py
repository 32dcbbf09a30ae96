#!/usr/bin/env python3
"""Dashboard latency: a reading published → the rig page showing it, with 0 and 50 viewers,
and the controller's CPU cost of serving them.

One run, all on loopback: a private Mosquitto, ``labctl serve`` (a subprocess, broker
``external``) with one dashboard user, one device (paho) with a retained manifest, ``online``
and a ``labctl/1`` telemetry sample every ``1/--rate`` s. What a single reading changes on the
rig page is the device row's "Last seen" cell (``td.ts[data-ts]`` = the controller's receive
time of the newest message), so the page "shows" reading *i* once that cell holds a time at or
after *i*'s publish time (a later reading counts too: the page is then at least that fresh).

Phases, each a fixed window of ``--window`` s:

1. ``baseline``: no viewer; the controller's CPU only.
2. ``1 viewer``: one Chromium page (Debian's ``/usr/bin/chromium`` via Playwright) on
   ``/dashboard/rig``; a MutationObserver injected into it logs ``Date.now()`` whenever the
   cell changes. Latency = that time − the publish time (same machine clock).
3. ``50 viewers``: ``--pages`` Chromium pages (each its own sign-in) plus ``50 − pages``
   lightweight SSE clients (httpx, one separate process, each its own sign-in) on
   ``/dashboard/events?page=rig``; they log when an event carries a new ``last_seen``.

CPU is ``psutil.Process(serve).cpu_times()`` (user + system) over the window; RSS at its end.

Run: ``.venv/bin/python benchmarks/dashboard_latency.py [--window 20] [--rate 2] [--pages 3]``.
Exit status 0 when every reading reached the page within 1 s, 1 when not, 2 when it could not
measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, load_note, table, use_repo_imports

use_repo_imports()

TARGET_S = 1.0
VIEWERS = 50
TOKEN = "dept-token-for-the-latency-benchmark-0123456789"
USER = "environment"
DEVICE = "acme/probe-1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OBSERVER_JS = """(key) => {
  window.__lat = [];
  let last = null;
  const sel = 'tr[data-key="' + key + '"] td.ts';
  const check = () => {
    const td = document.querySelector(sel);
    if (!td) return;
    const v = Number(td.dataset.ts);
    if (v !== last) { last = v; window.__lat.push([Date.now() / 1000, v]); }
  };
  new MutationObserver(check).observe(document.querySelector("#devices tbody"),
    {childList: true, subtree: true, attributes: true});
  check();
}"""


# -- the lightweight SSE viewers (a child process: `--sse-worker`) ---------------------------


async def _sse_client(
    base: str, stop_at: float, log: list[list[float]], stats: dict[str, int]
) -> None:
    import httpx
    import orjson

    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10.0, read=None)) as c:
        r = await c.post("/dashboard/login", data={"name": USER, "secret": TOKEN})
        if r.status_code != 303:
            raise RuntimeError(f"sign-in refused: {r.status_code}")
        last = None
        async with c.stream("GET", "/dashboard/events", params={"page": "rig"}) as resp:
            stats["connected"] += 1
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    now = time.time()
                    stats["events"] += 1
                    for d in orjson.loads(line[6:]).get("devices", []):
                        if d["key"] == DEVICE and d["last_seen"] != last:
                            last = d["last_seen"]
                            log.append([now, last])
                if time.time() > stop_at:
                    return


async def _sse_main(base: str, n: int, duration: float, out: Path) -> None:
    """Run ``n`` clients until SIGTERM (or ``duration``), then write their logs to ``out``."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    logs: list[list[list[float]]] = [[] for _ in range(n)]
    stats = {"connected": 0, "events": 0}
    stop_at = time.time() + duration
    tasks = [asyncio.create_task(_sse_client(base, stop_at, logs[i], stats)) for i in range(n)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    errors = [
        repr(t.exception()) for t in tasks if t.done() and not t.cancelled() and t.exception()
    ]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    text = json.dumps({"logs": logs, "stats": stats, "errors": errors[:5]})
    await asyncio.to_thread(out.write_text, text)


# -- the controller under test ---------------------------------------------------------------


class Serve:
    """``labctl serve`` with one department dashboard user, on a private broker."""

    def __init__(self, root: Path, broker_host: str, broker_port: int) -> None:
        import yaml

        from labctl.bus.broker import free_port
        from labctl.serve.dashboard.auth import token_sha256
        from labctl.serve.discovery import read_info

        self.data = root / "data"
        config = root / "labctl.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(self.data),
                    "controller": "ctl-dash-bench",
                    "broker": {"mode": "external", "host": broker_host, "port": broker_port},
                    "dashboard": {"users": [{"name": USER, "token_sha256": token_sha256(TOKEN)}]},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
        env["LABCTL_CONFIG"] = str(config)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "serve.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labctl.cli.main", "serve", "--http", f"127.0.0.1:{port}"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 30
        while read_info(self.data) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Device:
    """One labctl/1 device: retained manifest, online, then a telemetry sample every period."""

    def __init__(self, host: str, port: int, rate_hz: float) -> None:
        import orjson
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._dumps = orjson.dumps
        self.period = 1.0 / rate_hz
        self.published: list[float] = []
        self._stop = threading.Event()
        vendor, dev = DEVICE.split("/")
        self.base = f"lab/v1/{vendor}/{dev}"
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="acme-probe-1", protocol=paho.MQTTv5
        )
        self.c.connect(host, port)
        self.c.loop_start()
        manifest = {
            "schema": "labctl/1",
            "version": 1,
            "session": "s1",
            "device": {
                "vendor": vendor,
                "id": dev,
                "model": "P1",
                "serial": "7",
                "sw_version": "2",
            },
            "channels": [{"name": "pm25", "unit": "µg/m³", "rate_hz": rate_hz}],
        }
        self.c.publish(
            self.base + "/manifest", orjson.dumps(manifest), qos=1, retain=True
        ).wait_for_publish(5)
        self.c.publish(
            self.base + "/state", b'{"state":"online","session":"s1"}', qos=1
        ).wait_for_publish(5)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        nxt = time.monotonic()
        while not self._stop.is_set():
            now = time.time()
            sample = {"session": "s1", "seq": seq, "ts": now, "v": {"pm25": 10.0 + seq % 97 / 10}}
            self.published.append(now)
            self.c.publish(f"{self.base}/telemetry/air", self._dumps(sample), qos=1)
            seq += 1
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self.c.publish(
                self.base + "/state", b'{"state":"offline","session":"s1"}', qos=1
            ).wait_for_publish(2)
        self.c.loop_stop()
        self.c.disconnect()


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    viewers: int
    cpu_pct: float = 0.0
    rss_mib: float = 0.0
    page_lat: list[float] = field(default_factory=list)
    page_missed: int = 0
    sse_lat: list[float] = field(default_factory=list)
    sse_missed: int = 0
    note: str = ""


def latencies(
    published: list[float], log: list[list[float]], t0: float, t1: float
) -> tuple[list[float], int]:
    """For each publish in [t0, t1): the first log entry showing a receive time at or after it."""
    lat, missed = [], 0
    entries = sorted(log)
    for tp in published:
        if not t0 <= tp < t1:
            continue
        hit = next((seen for seen, value in entries if value >= tp), None)
        if hit is None:
            missed += 1
        else:
            lat.append(hit - tp)
    return lat, missed


def cpu_window(proc: Any, seconds: float) -> tuple[float, float, float, float]:
    """Sleep ``seconds``; return (wall start, wall end, CPU %, RSS MiB) of ``proc``."""
    c0, m0, w0 = proc.cpu_times(), time.monotonic(), time.time()
    time.sleep(seconds)
    c1, m1, w1 = proc.cpu_times(), time.monotonic(), time.time()
    used = (c1.user - c0.user) + (c1.system - c0.system)
    return w0, w1, 100.0 * used / (m1 - m0), proc.memory_info().rss / 2**20


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(values: list[float], q: float | None) -> str:
    if not values:
        return "-"
    v = max(values) if q is None else pct(values, q)
    return f"{1000 * v:.0f}"


def open_page(browser: Any, base: str) -> Any:
    # bypass_csp: the page's CSP forbids eval, and the observer is injected by evaluate
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    p = context.new_page()
    p.goto(base + "/dashboard/login")
    p.fill("input[name=name]", USER)
    p.fill("input[name=secret]", TOKEN)
    p.click("button[type=submit]")
    p.wait_for_url("**/dashboard/rig")
    p.wait_for_selector("#live.on")
    p.wait_for_selector(f'tr[data-key="{DEVICE}"]', timeout=10_000)
    p.evaluate(OBSERVER_JS, DEVICE)
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=20.0, help="seconds per phase (default 20)")
    ap.add_argument("--rate", type=float, default=2.0, help="readings per second (default 2)")
    ap.add_argument("--pages", type=int, default=3, help="Chromium pages among the 50 viewers")
    ap.add_argument(
        "--sse-worker", nargs=4, metavar=("URL", "N", "SECONDS", "OUT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.sse_worker:
        url, n, secs, out = args.sse_worker
        asyncio.run(_sse_main(url, int(n), float(secs), Path(out)))
        return 0

    import psutil
    from playwright.sync_api import sync_playwright

    from labctl.bus.broker import PrivateBroker

    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (Debian's chromium package)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="labctl-dash-bench-"))
    broker = PrivateBroker(root / "broker")
    serve: Serve | None = None
    device: Device | None = None
    worker: subprocess.Popen[bytes] | None = None
    phases: list[Phase] = []
    n_sse = VIEWERS - args.pages
    W = args.window
    try:
        broker.start()
        serve = Serve(root, broker.host, broker.port)
        proc = psutil.Process(serve.proc.pid)
        device = Device(broker.host, broker.port, args.rate)
        time.sleep(3)  # warm-up: manifest accepted, readings flowing

        ph = Phase("baseline (no viewer)", 0)
        _, _, ph.cpu_pct, ph.rss_mib = cpu_window(proc, W)
        phases.append(ph)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            pages = [open_page(browser, serve.url)]
            time.sleep(2)
            pages[0].evaluate("() => { window.__lat = []; }")
            ph = Phase("1 viewer (Chromium)", 1)
            t0, t1, ph.cpu_pct, ph.rss_mib = cpu_window(proc, W)
            ph.page_lat, ph.page_missed = latencies(
                device.published, pages[0].evaluate("() => window.__lat"), t0, t1 - 1.5
            )
            phases.append(ph)

            out = root / "sse.json"
            sse_secs = W + 60
            worker = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--sse-worker",
                    serve.url,
                    str(n_sse),
                    str(sse_secs),
                    str(out),
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )
            pages += [open_page(browser, serve.url) for _ in range(args.pages - 1)]
            time.sleep(5)  # the SSE clients sign in and connect
            for p in pages:
                p.evaluate("() => { window.__lat = []; }")
            ph = Phase(f"{VIEWERS} viewers ({args.pages} Chromium + {n_sse} SSE)", VIEWERS)
            t0, t1, ph.cpu_pct, ph.rss_mib = cpu_window(proc, W)
            for p in pages:
                lat, missed = latencies(
                    device.published, p.evaluate("() => window.__lat"), t0, t1 - 1.5
                )
                ph.page_lat += lat
                ph.page_missed += missed
            browser.close()
        worker.send_signal(signal.SIGTERM)  # it writes its log and exits
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        if out.exists():
            rec = json.loads(out.read_text())
            for log in rec["logs"]:
                lat, missed = latencies(device.published, log, t0, t1 - 1.5)
                ph.sse_lat += lat
                ph.sse_missed += missed
            st = rec["stats"]
            ph.note = f"SSE clients connected {st['connected']}/{n_sse}, {st['events']} events"
            if rec["errors"]:
                ph.note += f", errors: {rec['errors']}"
        else:
            ph.note = "the SSE worker wrote no log"
        phases.append(ph)
    finally:
        if device is not None:
            device.stop()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(5)
        if serve is not None:
            serve.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nDashboard latency: reading published → rig page 'Last seen' updated ({load_note()})")
    print(f"one device at {args.rate:g} readings/s, {W:g} s per phase, target < {TARGET_S:g} s\n")
    rows = []
    for ph in phases:
        for who, lat, missed in (
            ("page", ph.page_lat, ph.page_missed),
            ("SSE", ph.sse_lat, ph.sse_missed),
        ):
            if who == "SSE" and not (lat or missed):
                continue
            if who == "page" and not (lat or missed) and ph.viewers:
                continue
            n = f"{len(lat)}" + (f" (+{missed} missed)" if missed else "")
            rows.append(
                [
                    ph.name if who == "page" or not rows or rows[-1][0] != ph.name else "",
                    who if ph.viewers else "-",
                    n if ph.viewers else "-",
                    ms(lat, 0.5),
                    ms(lat, 0.95),
                    ms(lat, None),
                    f"{ph.cpu_pct:.1f}",
                    f"{ph.cpu_pct * 10:.0f}",
                    f"{ph.rss_mib:.0f}",
                ]
            )
    print(
        table(
            [
                "phase",
                "seen by",
                "readings",
                "p50 ms",
                "p95 ms",
                "max ms",
                "ctl CPU %",
                "CPU ms/s",
                "RSS MiB",
            ],
            rows,
            [False, False, True, True, True, True, True, True, True],
        )
    )
    for ph in phases:
        if ph.note:
            print(f"note ({ph.name}): {ph.note}")
    measured = [x for ph in phases for x in ph.page_lat + ph.sse_lat]
    missed = sum(ph.page_missed + ph.sse_missed for ph in phases)
    if not measured:
        print("verdict: NOT MEASURED (no reading reached a viewer)")
        return 2
    worst = max(measured)
    ok = worst < TARGET_S and missed == 0
    load = phases[-1]
    print(
        f"verdict: {'PASS' if ok else 'FAIL'} — 'updates reach the browser within 1 s': "
        f"max {1000 * worst:.0f} ms over {len(measured)} reading×viewer pairs, {missed} missed; "
        f"with {VIEWERS} viewers p95 {ms(load.page_lat + load.sse_lat, 0.95)} ms, "
        f"controller CPU {load.cpu_pct:.1f} % of one core "
        f"(+{load.cpu_pct - phases[0].cpu_pct:.1f} points over no viewer)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
