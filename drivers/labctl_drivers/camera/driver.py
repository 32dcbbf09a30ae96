"""The ``camera`` lab driver: registered in the ``labctl.drivers`` entry-point group.

The existing driver protocols turn bytes or telemetry into readings
(``labctl.drivers.TelemetryDriver``, ``labctl.serial_driver.SerialDriver``). A camera yields
frames, a different capability, so it has its own small protocol, :class:`FrameSource`, and
declares ``transport = "camera"`` (as serial drivers declare ``"serial"``) so registries can
tell it apart. :func:`camera_driver_registry` lists the installed camera drivers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from labctl.drivers import ENTRY_POINT_GROUP
from labctl.plugins import PluginError, PluginRegistry
from labctl_drivers.camera.capture import Camera
from labctl_drivers.camera.frame import CameraInfo, EndOfStream, Frame
from labctl_drivers.camera.source import CameraSource
from labctl_drivers.camera.stats import CameraStats
from labctl_drivers.options import parse_options


@runtime_checkable
class FrameSource(Protocol):
    """Anything that delivers frames to a trial (a camera, a simulated camera)."""

    async def open(self) -> CameraInfo:
        """Open the source; CameraError in words when it cannot be opened in time."""
        ...

    def frames(self) -> AsyncIterator[Frame]:
        """Frames until a finite source ends; CameraError when a live one stops."""
        ...

    def stats(self) -> CameraStats:
        """Counters and rates now."""
        ...

    @property
    def end(self) -> EndOfStream | None:
        """How a finite source ended (None while running)."""
        ...

    async def close(self) -> None:
        """Release the source and stop its thread (idempotent)."""
        ...


class CameraDriver:
    """A camera configured from rig-config ``options`` (the :class:`CameraSource` fields)."""

    name: ClassVar[str] = "camera"
    transport: ClassVar[Literal["camera"]] = "camera"

    def __init__(self, source: CameraSource) -> None:
        self.source = source

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """The driver for ``options``; ValueError in words for bad ones."""
        return cls(parse_options(CameraSource, options, cls.name))

    def camera(self) -> Camera:
        """A new, unopened camera: ``async with driver.camera() as cam: …``."""
        return Camera(self.source)


def camera_driver_registry() -> PluginRegistry[type[CameraDriver]]:
    """Every camera driver installed (``labctl.drivers`` entries with ``transport = "camera"``)."""
    reg = PluginRegistry[type[CameraDriver]]("camera driver")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        item = ep.load()
        if getattr(item, "transport", None) != "camera":
            continue
        origin = ep.value + (f" (from {ep.dist.name})" if ep.dist is not None else "")
        if not isinstance(item, type):
            raise PluginError(f"camera driver {ep.name!r} ({origin}) is not a class")
        reg.register(ep.name, item, origin)
    return reg
