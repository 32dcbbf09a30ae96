"""Device reservations: two runs never share a device.

A run reserves its devices for its duration; a run that needs a reserved device waits in a
queue or is refused with the holder named. Reservations live in the process that hosts the
runs, so a reservation dies with its run — also when the run crashes, since release happens
in the run's ``finally`` — and with the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

RIG = "rig:*"
"""The whole rig as one resource: a run on a simulated rig holds it, devices and all."""


class DeviceBusy(Exception):
    """A device is reserved by another run; the message names the holder."""


@dataclass(frozen=True)
class Holder:
    """Which run holds a device."""

    run: str
    trial: str


class Reservations:
    """Who holds which device; resources are strings (``vendor/device`` or ``rig:NAME``)."""

    def __init__(self, default: Holder | None = None) -> None:
        self._held: dict[str, Holder] = {}
        self._changed = asyncio.Condition()
        self.default = default or Holder("", "")

    def holder(self, resource: str) -> Holder:
        """The run that holds ``resource``; a run holding the whole rig (``RIG``) holds every
        device on it; otherwise the default (no run: ``Holder('', '')``)."""
        return self._held.get(resource) or self._held.get(RIG) or self.default

    def held(self) -> dict[str, Holder]:
        """A snapshot of every reservation."""
        return dict(self._held)

    def _conflicts(self, run: str, resources: Iterable[str]) -> list[str]:
        return [
            f"{r} (held by run {self._held[r].run}, trial {self._held[r].trial})"
            for r in resources
            if r in self._held and self._held[r].run != run
        ]

    async def reserve(
        self,
        holder: Holder,
        resources: Iterable[str],
        *,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        """Reserve all of ``resources`` at once, or none; wait or raise :class:`DeviceBusy`."""
        wanted = sorted(set(resources))
        async with self._changed:
            if not wait:
                busy = self._conflicts(holder.run, wanted)
                if busy:
                    raise DeviceBusy("reserved by another run: " + "; ".join(busy))
            else:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: not self._conflicts(holder.run, wanted)),
                        timeout_s,
                    )
                except TimeoutError:
                    busy = self._conflicts(holder.run, wanted)
                    raise DeviceBusy(
                        f"still reserved after {timeout_s:g} s: " + "; ".join(busy)
                    ) from None
            for r in wanted:
                self._held[r] = holder

    async def release(self, run: str) -> None:
        """Release everything ``run`` holds."""
        async with self._changed:
            for r in [r for r, h in self._held.items() if h.run == run]:
                del self._held[r]
            self._changed.notify_all()
