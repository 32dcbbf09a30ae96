"""Routes of the read-only dashboard, mounted on the controller's FastAPI app under
``/dashboard``. Pages are Jinja2 templates (autoescaped); scripts and styles are files under
``/dashboard/static`` so the Content-Security-Policy forbids inline code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from labctl.serve.dashboard.auth import COOKIE, Scope, Session, Sessions
from labctl.serve.dashboard.live import LiveHub
from labctl.serve.dashboard.runs import RunFilter, get_visible, report_path, rows
from labctl.serve.service import ControllerService

HERE = Path(__file__).parent
PREFIX = "/dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)
PUSH_MIN_INTERVAL_S = 0.2
"""At most five updates a second per browser; a reading is drawn well within 1 s."""
KEEPALIVE_S = 1.0
MAX_FORM_BYTES = 4096


class _SignIn(Exception):
    """No valid session: pages redirect to the sign-in form."""


def mount_dashboard(app: FastAPI, service: ControllerService) -> LiveHub:
    """Add the dashboard's routes to ``app``; returns the hub it feeds from the controller."""
    settings = service.settings.dashboard
    sessions = Sessions(settings)
    hub = LiveHub(service)
    service.observers.append(hub.on_result)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    env.filters["verdict"] = lambda ok: "pass" if ok else "fail"

    def page(name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(f"{name}.html.j2").render(
            session=session, prefix=PREFIX, rig=service.settings.rig.name, **ctx
        )
        return HTMLResponse(html, status_code=status)

    def session_of(request: Request) -> Session:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise _SignIn
        return s

    @app.exception_handler(_SignIn)
    async def to_sign_in(request: Request, exc: _SignIn) -> Response:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    @app.middleware("http")
    async def csp(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith(PREFIX) or request.url.path == "/":
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    @app.get(f"{PREFIX}/login")
    async def login_form() -> Response:
        return page("login", None, error="")

    @app.post(f"{PREFIX}/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        form = parse_qs(body.decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip()
        secret = (form.get("secret") or [""])[0]
        found = await asyncio.to_thread(sessions.authenticate, name, secret)
        if found is None:
            await asyncio.sleep(0.3)  # slow down guessing
            return page("login", None, 401, error="Wrong name, password or token.")
        response = RedirectResponse(f"{PREFIX}/rig", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.open(found),
            max_age=int(settings.session_ttl_s),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookie,
        )
        return response

    @app.post(f"{PREFIX}/logout")
    async def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.get(f"{PREFIX}/")
    async def home(request: Request) -> Response:
        session_of(request)
        return RedirectResponse(f"{PREFIX}/rig", status_code=303)

    @app.get(f"{PREFIX}/rig")
    async def rig(request: Request) -> Response:
        s = session_of(request)
        return page("rig", s, devices=hub.devices(s.scope), nav="rig")

    @app.get(PREFIX + "/devices/{vendor}/{device}")
    async def device(request: Request, vendor: str, device: str) -> Response:
        s = session_of(request)
        found = next((d for d in hub.devices(s.scope) if d.key == f"{vendor}/{device}"), None)
        if found is None:
            return page("missing", s, 404, what=f"device {vendor}/{device}", nav="rig")
        return page("device", s, d=found, nav="rig")

    @app.get(f"{PREFIX}/trial")
    async def trials(request: Request) -> Response:
        s = session_of(request)
        ids = _visible_runs(hub, s.scope)
        if ids:
            return RedirectResponse(f"{PREFIX}/trial/{ids[0]}", status_code=303)
        return page("trial_none", s, nav="trial")

    @app.get(PREFIX + "/trial/{run_id}")
    async def trial(request: Request, run_id: str) -> Response:
        s = session_of(request)
        hosted = hub.visible_run(run_id, s.scope)
        if hosted is None:
            return page("missing", s, 404, what=f"trial run {run_id}", nav="trial")
        return page("trial", s, run=hub.run_state(run_id, hosted, s.scope), nav="trial")

    @app.get(f"{PREFIX}/runs")
    async def runs(
        request: Request, trial: str = "", vendor: str = "", date_from: str = "", date_to: str = ""
    ) -> Response:
        s = session_of(request)
        f = RunFilter(trial.strip(), vendor.strip(), date_from.strip(), date_to.strip())
        found = await asyncio.to_thread(rows, service.store, service.settings.data_dir, s.scope, f)
        return page("runs", s, rows=found, f=f, nav="runs")

    @app.get(PREFIX + "/runs/{run_id}/report")
    async def report(request: Request, run_id: str) -> Response:
        s = session_of(request)
        record = await asyncio.to_thread(get_visible, service.store, run_id, s.scope)
        path = report_path(service.settings.data_dir, run_id) if record else None
        if path is None:
            return page("missing", s, 404, what=f"a report of run {run_id}", nav="runs")
        return FileResponse(
            path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP}
        )

    @app.get(f"{PREFIX}/events")
    async def events(request: Request, page: str = "rig", run: str = "") -> Response:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise HTTPException(401, "sign in first")
        if page == "trial" and hub.visible_run(run, s.scope) is None:
            raise HTTPException(404, "no such trial run")
        last = request.headers.get("last-event-id", "")
        cursor = int(last) if last.isdigit() and int(last) <= hub.seq else 0
        return StreamingResponse(
            _stream(hub, request, s, page, run, cursor),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    return hub


def _visible_runs(hub: LiveHub, scope: Scope) -> list[str]:
    """Hosted runs this user may see: running ones first, newest first."""
    ids = [r for r in reversed(hub.service.runs) if hub.visible_run(r, scope) is not None]
    return sorted(ids, key=lambda r: hub.service.runs[r].task.done())


async def _stream(
    hub: LiveHub, request: Request, s: Session, page: str, run: str, cursor: int
) -> AsyncIterator[bytes]:
    """Server-sent events: a full state first (or what changed since ``Last-Event-ID``), then
    an update whenever something changed, at most every ``PUSH_MIN_INTERVAL_S``."""
    yield b"retry: 1000\n\n"
    while not hub.service.stopping.is_set() and s.expires > time.time():
        seq = hub.seq
        data: dict[str, Any] = {"seq": seq, "full": cursor == 0}
        if page == "trial":
            hosted = hub.service.runs.get(run)
            if hosted is None:
                return
            data["run"] = hub.run_state(run, hosted, s.scope)
            data["points"] = hub.points(run, cursor, s.scope)
        elif page == "trials":
            data["runs"] = _visible_runs(hub, s.scope)
        else:
            data["devices"] = [
                d.model_dump(exclude={"manifest", "last_errors", "session"})
                for d in hub.devices(s.scope)
            ]
            # the device list is cached briefly: when it predates the newest change, push
            # again after the throttle rather than only at the next change or keepalive
            seq = min(seq, hub.devices_seq)
            data["seq"] = seq
        cursor = seq
        yield b"id: %d\nevent: update\ndata: %s\n\n" % (seq, orjson.dumps(data))
        if await request.is_disconnected():
            return
        await asyncio.sleep(PUSH_MIN_INTERVAL_S)
        if hub.seq == seq:  # nothing new while throttled: wait for the next change
            await hub.wait(KEEPALIVE_S)
