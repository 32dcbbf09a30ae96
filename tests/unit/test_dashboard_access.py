"""Dashboard access: sign-in with hashed secrets, session cookie flags, security headers, and a
vendor-scoped session that cannot reach another vendor's device or run by guessing URLs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labctl.config import Settings
from labctl.rig.registry import DeviceView
from labctl.serve.api import create_app
from labctl.serve.dashboard.auth import hash_dashboard_password, token_sha256
from labctl.serve.service import ControllerService
from labctl.store.records import DeviceInRun, RunRecord, SpecRef

DEPT_PASSWORD = "correct horse battery staple"
ACME_TOKEN = "acme-token-0123456789abcdef"


def _device(vendor: str, device: str, role: str = "dut") -> DeviceView:
    return DeviceView(
        key=f"{vendor}/{device}",
        vendor=vendor,
        device=device,
        model="M1",
        firmware="1.0",
        state="online",
        session="s1",
        last_seen=time.time(),
        channels=["pm25"],
        rejected=0,
        readings=10,
        quarantined=None,
        role=role,
    )


def _record(run_id: str, vendors: list[str]) -> RunRecord:
    devices = [
        DeviceInRun(
            key=f"{v}/d{i}",
            vendor=v,
            device=f"d{i}",
            role="dut",
            model="M1",
            serial="1",
            hw_version="1",
            sw_version="1",
            manifest_version=1,
            session="s",
        )
        for i, v in enumerate(vendors)
    ]
    devices.append(
        DeviceInRun(
            key="lab/ref",
            vendor="lab",
            device="ref",
            role="reference",
            model="T640",
            serial="1",
            hw_version="1",
            sw_version="1",
            manifest_version=1,
            session="s",
        )
    )
    return RunRecord(
        id=run_id,
        trial="pm25-collocation",
        title="PM2.5",
        kind="sensor-accuracy",
        rig="sim",
        spec=SpecRef(path="x.yaml", sha256="0" * 64),
        status="passed",
        exit_code=0,
        started_at=time.time(),
        ended_at=time.time(),
        devices=devices,
        labctl_version="0",
        data_dir="",
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        dashboard={
            "users": [
                {"name": "transport", "password_hash": hash_dashboard_password(DEPT_PASSWORD)},
                {"name": "acme", "token_sha256": token_sha256(ACME_TOKEN), "scope": "vendor:acme"},
            ]
        },
    )
    service = ControllerService(settings)
    service.registry.save([_device("acme", "a1"), _device("zeta", "z1")])
    for run_id, vendors in (("20261121-100000-aaaa", ["acme"]), ("20261121-110000-bbbb", ["zeta"])):
        rec = _record(run_id, vendors)
        service.store.start(rec.model_copy(update={"status": "running", "exit_code": -1}))
        service.store.finish(rec)
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "runs" / run_id / "report.html").write_text(f"<p>report {run_id}</p>")
    with TestClient(create_app(service, "api-token"), base_url="http://127.0.0.1") as c:
        yield c


def sign_in(c: TestClient, name: str, secret: str) -> int:
    r = c.post(
        "/dashboard/login",
        content=f"name={name}&secret={secret.replace(' ', '+')}",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    return r.status_code


def test_pages_need_a_session_and_wrong_secrets_are_refused(client: TestClient) -> None:
    for path in ("/dashboard/rig", "/dashboard/runs", "/dashboard/trial"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard/events").status_code == 401
    assert sign_in(client, "transport", "wrong password") == 401
    assert sign_in(client, "acme", "not-the-token") == 401
    assert sign_in(client, "nobody", ACME_TOKEN) == 401
    assert "labctl_dashboard" not in client.cookies
    assert client.get("/dashboard/rig", follow_redirects=False).status_code == 303
    # the JSON control API keeps its own bearer token; a dashboard session is not enough
    assert sign_in(client, "transport", DEPT_PASSWORD) == 303
    assert client.get("/api/devices").status_code == 401


def test_session_cookie_and_security_headers(client: TestClient) -> None:
    r = client.post(
        "/dashboard/login",
        content=f"name=transport&secret={DEPT_PASSWORD.replace(' ', '+')}",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    page = client.get("/dashboard/rig")
    assert page.status_code == 200
    h = page.headers
    assert "script-src 'self'" in h["content-security-policy"]
    assert "unsafe-inline" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text and "onclick" not in page.text
    assert "acme/a1" in page.text and "zeta/z1" in page.text
    runs = client.get("/dashboard/runs").text
    assert "20261121-100000-aaaa" in runs and "20261121-110000-bbbb" in runs
    assert (
        "report 20261121-110000-bbbb"
        in client.get("/dashboard/runs/20261121-110000-bbbb/report").text
    )
    filtered = client.get("/dashboard/runs", params={"vendor": "zeta"}).text
    assert "20261121-110000-bbbb" in filtered and "20261121-100000-aaaa" not in filtered
    client.post("/dashboard/logout")
    assert client.get("/dashboard/rig", follow_redirects=False).status_code == 303


def test_a_vendor_sees_only_its_own_devices_and_runs(client: TestClient) -> None:
    assert sign_in(client, "acme", ACME_TOKEN) == 303
    rig = client.get("/dashboard/rig").text
    assert "acme/a1" in rig and "zeta" not in rig
    assert client.get("/dashboard/devices/acme/a1").status_code == 200
    assert client.get("/dashboard/devices/zeta/z1").status_code == 404
    runs = client.get("/dashboard/runs").text
    assert "20261121-100000-aaaa" in runs and "20261121-110000-bbbb" not in runs
    assert client.get("/dashboard/runs/20261121-100000-aaaa/report").status_code == 200
    guessed = client.get("/dashboard/runs/20261121-110000-bbbb/report")
    assert guessed.status_code == 404 and "report 2026" not in guessed.text
    assert client.get("/dashboard/runs/20261121-110000-b/report").status_code == 404  # prefix
    assert client.get("/dashboard/runs/..%2F..%2Fserve.json/report").status_code == 404
    assert client.get("/dashboard/trial/20261121-110000-bbbb").status_code == 404
    assert (
        client.get(
            "/dashboard/events", params={"page": "trial", "run": "20261121-110000-bbbb"}
        ).status_code
        == 404
    )


def test_chart_catch_up_sends_only_what_changed_since_the_last_event() -> None:
    from labctl.serve.dashboard.live import RunCharts

    charts = RunCharts(600.0, ("pm25",))
    charts.add("acme/a1", 0.0, {"pm25": 10.0}, seq=1)
    charts.add("acme/a1", 700.0, {"pm25": 20.0}, seq=2)
    charts.add("acme/a1", 710.0, {"pm25": 30.0, "rh": 50.0}, seq=3)
    charts.add("zeta/z1", 0.0, {"pm25": 5.0}, seq=3)
    assert charts.since(0, {"acme/a1", "zeta/z1"}) == {
        "pm25": {"acme/a1": [[0.0, 10.0], [600.0, 25.0]], "zeta/z1": [[0.0, 5.0]]}
    }
    # a browser that saw event 2 gets the bucket changed by event 3 only; scope filters devices
    assert charts.since(2, {"acme/a1"}) == {"pm25": {"acme/a1": [[600.0, 25.0]]}}
    assert charts.since(3, {"acme/a1"}) == {}
