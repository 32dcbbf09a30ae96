"""The controller's HTTP API (JSON). Every route needs the bearer token from ``serve.json``.

The department dashboard (read-only pages under ``/dashboard``, ``labctl.serve.dashboard``) is
served by the same app with its own sign-in; this API is the control surface for the local CLI.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from labctl.evaluators.base import evaluator_registry
from labctl.readings import DeviceRef
from labctl.rig.registry import DeviceView
from labctl.serve.service import ControllerService
from labctl.store.records import RunRecord
from labctl.trial.checks import check_spec
from labctl.trial.spec import SpecError

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class RunRequest(BaseModel):
    """Start a run of a spec file on the controller's machine."""

    spec_path: str
    wait: bool = True


class RunStatus(BaseModel):
    """A hosted run as the CLI polls it."""

    id: str
    done: bool
    phase: str = ""
    device_elapsed_s: float = 0.0
    device_total_s: float = 0.0
    readings: int = 0
    readings_per_s: float = 0.0
    rejected: int = 0
    events: list[str] = []
    record: RunRecord | None = None


def create_app(service: ControllerService, token: str) -> FastAPI:
    """The API bound to one running controller."""
    evaluators = evaluator_registry()  # entry points are read once, not per request
    app = FastAPI(title="labctl controller", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def authorised(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong token (see serve.json in the data dir)")

    auth = [Depends(authorised)]

    if service.settings.dashboard.enabled:
        from labctl.serve.dashboard.app import mount_dashboard

        mount_dashboard(app, service)

    @app.get("/api/health", dependencies=auth)
    async def health() -> dict[str, object]:
        return {
            "controller": service.settings.controller,
            "rig": service.settings.rig.name,
            "running": service.rt is not None,
            "runs": len(service.runs),
        }

    @app.get("/api/devices", dependencies=auth)
    async def devices() -> list[DeviceView]:
        return service.devices()

    @app.get("/api/devices/{vendor}/{device}", dependencies=auth)
    async def device(vendor: str, device: str) -> DeviceView:
        found = service.device(f"{vendor}/{device}")
        if found is None:
            raise HTTPException(404, f"no device {vendor}/{device}")
        return found

    @app.delete("/api/devices/{vendor}/{device}", dependencies=auth)
    async def forget(vendor: str, device: str) -> dict[str, object]:
        try:
            ref = DeviceRef(vendor, device)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        known = service.device(ref.key) is not None
        if not known:
            raise HTTPException(404, f"no device {ref.key}")
        await service.forget(ref)
        return {"forgotten": ref.key}

    @app.get("/api/reservations", dependencies=auth)
    async def reservations() -> dict[str, dict[str, str]]:
        return {k: {"run": h.run, "trial": h.trial} for k, h in service.reservations.held().items()}

    @app.post("/api/runs", dependencies=auth)
    async def start(req: RunRequest) -> RunStatus:
        try:
            loaded = check_spec(Path(req.spec_path), evaluators)
        except SpecError as exc:
            raise HTTPException(400, str(exc)) from exc
        factory = evaluators.get(loaded.spec.kind)
        hosted = service.start_run(loaded, factory, wait=req.wait)
        return RunStatus(id=hosted.runner.run_id, done=False)

    @app.get("/api/runs/{run_id}", dependencies=auth)
    async def status(run_id: str, since: int = 0, wait_s: float = 0.0) -> RunStatus:
        hosted = service.runs.get(run_id)
        if hosted is None:
            raise HTTPException(404, f"the controller hosts no run {run_id}")
        if wait_s > 0 and not hosted.task.done():
            await asyncio.wait([hosted.task], timeout=min(wait_s, 10.0))
        p = hosted.progress
        done = hosted.task.done()
        return RunStatus(
            id=run_id,
            done=done,
            phase=p.phase if p else "",
            device_elapsed_s=p.device_elapsed_s if p else 0.0,
            device_total_s=p.device_total_s if p else 0.0,
            readings=p.readings if p else 0,
            readings_per_s=p.readings_per_s if p else 0.0,
            rejected=p.rejected if p else 0,
            events=hosted.events[since:],
            record=hosted.task.result() if done else None,
        )

    @app.post("/api/runs/{run_id}/abort", dependencies=auth)
    async def abort(run_id: str) -> dict[str, str]:
        hosted = service.runs.get(run_id)
        if hosted is None:
            raise HTTPException(404, f"the controller hosts no run {run_id}")
        hosted.runner.abort.set()
        return {"aborting": run_id}

    return app
