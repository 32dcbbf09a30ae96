"""The long-running controller: keeps the registry current, announces itself, hosts runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from labctl.bus.edge import EdgeResult
from labctl.bus.mqtt import Will
from labctl.config import Settings
from labctl.evaluators.base import EvaluatorFactory
from labctl.protocol import topics
from labctl.readings import DeviceRef
from labctl.rig.registry import DeviceRegistry, DeviceView, view_of
from labctl.rig.reservations import Reservations
from labctl.rig.runtime import RigRuntime, open_runtime
from labctl.store.records import RunRecord
from labctl.store.runs import RunStore
from labctl.trial.runner import Progress, TrialRunner
from labctl.trial.spec import LoadedSpec

log = logging.getLogger(__name__)


@dataclass
class HostedRun:
    """A run the controller is hosting."""

    runner: TrialRunner
    task: asyncio.Task[RunRecord]
    progress: Progress | None = None
    events: list[str] = field(default_factory=list)


class ControllerService:
    """State and behaviour behind ``labctl serve`` and its HTTP API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RunStore(settings.store_path)
        self.registry = DeviceRegistry(settings.data_dir / "registry.sqlite3")
        self.reservations = Reservations()
        self.session = secrets.token_hex(6)
        self.runs: dict[str, HostedRun] = {}
        self.rt: RigRuntime | None = None
        self.stopping = asyncio.Event()
        self._dirty: set[DeviceRef] = set()
        self.started_at = time.time()
        self.observers: list[Callable[[EdgeResult], None]] = []
        """Called with every durable edge result (the live dashboard); must be cheap."""

    # -- lifecycle -------------------------------------------------------------------------

    def _presence(self, state: str) -> bytes:
        return orjson.dumps({"state": state, "session": self.session, "ts": time.time()})

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Run until :attr:`stopping` is set; then stop runs cleanly and go offline."""
        s = self.settings
        topic = topics.controller_state(s.controller)
        will = Will(topic, self._presence("lost"))
        async with open_runtime(s, self.reservations, will=will) as rt:
            self.rt = rt
            rt.controller.listeners.append(self._on_result)
            # Devices republish their manifests when a controller announces itself.
            await rt.bus.publish(topic, self._presence("online"), qos=1, retain=True)
            flusher = asyncio.create_task(self._flush_loop())
            if ready is not None:
                ready.set()
            try:
                await self.stopping.wait()
            finally:
                for hosted in self.runs.values():
                    hosted.runner.abort.set()
                pending = [h.task for h in self.runs.values() if not h.task.done()]
                if pending:
                    await asyncio.wait(pending, timeout=60)
                flusher.cancel()
                self._flush()
                with contextlib.suppress(Exception):
                    await rt.bus.publish(topic, self._presence("offline"), qos=1, retain=True)
                self.rt = None

    def _on_result(self, result: EdgeResult) -> None:
        for observer in self.observers:
            observer(result)
        for p in result.presence:
            self._dirty.add(p.device)
        for rej in result.rejections:
            if rej.vendor and rej.device:
                self._dirty.add(DeviceRef(rej.vendor, rej.device))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            # Views are built here, on the loop that mutates the records; only the SQLite
            # write goes to a thread.
            views = self._dirty_views()
            if views:
                await asyncio.to_thread(self.registry.save, views)

    def _flush(self) -> None:
        """Write every changed device now (at shutdown)."""
        views = self._dirty_views()
        if views:
            self.registry.save(views)

    def _dirty_views(self) -> list[DeviceView]:
        if self.rt is None or not self._dirty:
            return []
        dirty, self._dirty = self._dirty, set()
        views = []
        for ref in dirty:
            rec = self.rt.directory.get(ref)
            if rec is not None:
                views.append(view_of(rec, self.rt.role_of(ref)))
        return views

    # -- devices ---------------------------------------------------------------------------

    def devices(self) -> list[DeviceView]:
        """Every device: live ones from memory, the rest from the registry."""
        live: dict[str, DeviceView] = {}
        if self.rt is not None:
            for rec in self.rt.directory.all():
                h = self.reservations.holder(rec.ref.key)
                live[rec.ref.key] = view_of(rec, self.rt.role_of(rec.ref), h.run or None)
        for v in self.registry.all():
            live.setdefault(v.key, v)
        return sorted(live.values(), key=lambda v: v.key)

    def device(self, key: str) -> DeviceView | None:
        """One device."""
        return next((d for d in self.devices() if d.key == key), None)

    async def forget(self, ref: DeviceRef) -> bool:
        """Clear a device's retained topics and its registry entry."""
        if self.rt is None:
            return False
        for topic in (
            topics.manifest(ref.vendor, ref.device),
            topics.state(ref.vendor, ref.device),
        ):
            await self.rt.bus.publish(topic, b"", qos=1, retain=True)
        self.rt.directory.forget(ref)
        self._dirty.discard(ref)
        return await asyncio.to_thread(self.registry.forget, ref.key)

    # -- runs ------------------------------------------------------------------------------

    def start_run(
        self, loaded: LoadedSpec, factory: type[EvaluatorFactory], *, wait: bool
    ) -> HostedRun:
        """Start hosting a run; returns at once."""
        assert self.rt is not None, "the controller is not running"
        hosted: HostedRun

        def on_progress(p: Progress) -> None:
            hosted.progress = p

        def on_event(text: str) -> None:
            hosted.events.append(text)
            del hosted.events[:-200]

        runner = TrialRunner(
            self.settings,
            loaded,
            factory,
            self.store,
            on_progress=on_progress,
            on_event=on_event,
            preflight_timeout_s=self.settings.rig.preflight_timeout_s,
            wait=wait,
        )
        task = asyncio.create_task(runner.run(self.rt), name=f"run-{runner.run_id}")
        hosted = HostedRun(runner, task)
        self.runs[runner.run_id] = hosted
        return hosted
