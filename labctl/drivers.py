"""Driver plugins: found through the ``labctl.drivers`` entry-point group.

A driver turns what a transport delivered into typed readings; it knows nothing of trials or
sinks. Registration is explicit and rejects duplicate names, so a vendor's package cannot
silently replace a lab driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from labctl.plugins import PluginRegistry
from labctl.protocol.payloads import Manifest, Sample
from labctl.readings import DeviceRef, Reading

ENTRY_POINT_GROUP = "labctl.drivers"


@runtime_checkable
class TelemetryDriver(Protocol):
    """Turns validated ``labctl/1`` telemetry into readings."""

    name: ClassVar[str]

    def decode(
        self,
        device: DeviceRef,
        manifest: Manifest,
        stream: str,
        session: str,
        samples: Sequence[Sample],
        received_ns: int,
    ) -> list[Reading]:
        """Readings for ``samples``; raise ValueError in words for data the manifest forbids."""
        ...


def driver_registry() -> PluginRegistry[type[TelemetryDriver]]:
    """Every driver installed in the environment."""
    return PluginRegistry[type[TelemetryDriver]]("driver").load(ENTRY_POINT_GROUP)
