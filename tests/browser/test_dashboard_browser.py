"""The department dashboard in a real browser: Debian's headless Chromium driven by Playwright
against ``labctl serve`` on a real Mosquitto. Sign in, watch a device go online and offline
live, watch a short simulated trial reach its verdict, open its report. Screenshots of every
page go to ``test-artifacts/``."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from playwright import sync_api as playwright_sync

from labctl.bus.broker import PrivateBroker
from labctl.serve.dashboard.auth import token_sha256
from tests.served import Served

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
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
TOKEN = "dept-token-for-the-browser-test-0123456789"
MANIFEST = {
    "schema": "labctl/1",
    "version": 1,
    "session": "s1",
    "device": {"vendor": "acme", "id": "probe-1", "model": "P1", "serial": "7", "sw_version": "2"},
    "channels": [{"name": "pm25", "unit": "µg/m³", "rate_hz": 1}],
}


def start_dashboard(root: Path, broker: PrivateBroker) -> Served:
    """``labctl serve`` with a dashboard user and a slower simulated rig (speed 25 000)."""
    users = [{"name": "environment", "token_sha256": token_sha256(TOKEN)}]
    return Served(root, broker, speed=25_000, extra={"dashboard": {"users": users}})


@pytest.fixture
def dashboard(tmp_path: Path, broker: PrivateBroker) -> Iterator[Served]:
    d = start_dashboard(tmp_path, broker)
    yield d
    d.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing (scripts/test installs it)")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def device(broker: PrivateBroker) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="acme-probe-1", protocol=paho.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def test_dashboard_live_in_chromium(
    dashboard: Served, broker: PrivateBroker, page: object, tmp_path: Path
) -> None:
    p = page  # a playwright Page
    base = dashboard.url + "/dashboard"
    # sign-in: the wrong token is refused, the right one opens the rig page
    p.goto(base + "/rig")  # type: ignore[attr-defined]
    assert p.url.endswith("/dashboard/login")  # type: ignore[attr-defined]
    p.fill("input[name=name]", "environment")  # type: ignore[attr-defined]
    p.fill("input[name=secret]", "wrong-token")  # type: ignore[attr-defined]
    p.click("button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_selector("#error")  # type: ignore[attr-defined]
    shot(p, "login-refused")
    p.fill("input[name=name]", "environment")  # type: ignore[attr-defined]
    p.fill("input[name=secret]", TOKEN)  # type: ignore[attr-defined]
    p.click("button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_url("**/dashboard/rig")  # type: ignore[attr-defined]
    p.wait_for_selector("#live.on")  # type: ignore[attr-defined]

    # a device goes online, then offline: the row follows live
    dev = device(broker)
    try:
        dev.publish("lab/v1/acme/probe-1/manifest", orjson.dumps(MANIFEST), qos=1, retain=True)
        t0 = time.monotonic()
        dev.publish("lab/v1/acme/probe-1/state", b'{"state":"online","session":"s1"}', qos=1)
        row = 'tr[data-key="acme/probe-1"]'
        p.wait_for_selector(row + '[data-state="online"]', timeout=5000)  # type: ignore[attr-defined]
        online_s = time.monotonic() - t0
        assert "P1" in p.inner_text(row)  # type: ignore[attr-defined]
        shot(p, "rig-online")
        t0 = time.monotonic()
        dev.publish("lab/v1/acme/probe-1/state", b'{"state":"offline","session":"s1"}', qos=1)
        p.wait_for_selector(row + '[data-state="offline"]', timeout=5000)  # type: ignore[attr-defined]
        offline_s = time.monotonic() - t0
        shot(p, "rig-offline")
    finally:
        dev.loop_stop()
        dev.disconnect()
    print(f"presence published → drawn: online {online_s:.3f} s, offline {offline_s:.3f} s")
    assert online_s < 1.5 and offline_s < 1.5

    # a short simulated trial: the trial page opens itself and follows it to its verdict
    p.goto(base + "/trial")  # type: ignore[attr-defined]
    spec = yaml.safe_load((REPO / "trials" / "pm25-collocation.yaml").read_text())
    spec["duration"] = "2d"
    spec_path = tmp_path / "short.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    run = dashboard.run(spec_path)
    p.wait_for_url("**/dashboard/trial/*", timeout=30_000)  # type: ignore[attr-defined]
    p.wait_for_selector("#charts polyline", timeout=30_000)  # type: ignore[attr-defined]
    # running criterion values appear before the verdict (the CSP forbids eval, so no
    # wait_for_function: selectors only)
    p.wait_for_selector("#criteria tbody tr", timeout=30_000)  # type: ignore[attr-defined]
    shot(p, "trial-running")
    p.wait_for_selector(  # type: ignore[attr-defined]
        "#status.passed, #status.failed", timeout=60_000
    )
    out, err = run.communicate(timeout=60)
    rec = json.loads(out)
    assert rec["status"] in ("passed", "failed"), err
    assert p.inner_text("#status") == rec["status"]  # type: ignore[attr-defined]
    crit = p.locator("#criteria tbody tr")  # type: ignore[attr-defined]
    assert crit.count() == 3 * 5  # three candidates × five criteria
    assert p.locator("#chart-pm25 polyline").count() == 4  # type: ignore[attr-defined]
    assert p.locator('#chart-pm25 polyline[data-device="lab/ref-t640"]').count() == 1  # type: ignore[attr-defined]
    shot(p, "trial-verdict")

    # the runs page lists it with its verdict and links to its report
    p.goto(base + "/runs")  # type: ignore[attr-defined]
    run_row = f'tr[data-run="{rec["id"]}"]'
    assert rec["status"] in p.inner_text(run_row)  # type: ignore[attr-defined]
    shot(p, "runs")
    p.click(run_row + " a.report")  # type: ignore[attr-defined]
    p.wait_for_url(f"**/runs/{rec['id']}/report")  # type: ignore[attr-defined]
    assert "nimbus/nb2-0001" in p.content()  # type: ignore[attr-defined]
    shot(p, "report")
