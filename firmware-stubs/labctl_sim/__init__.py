"""Device simulators that speak the real wire protocols (labctl/1 over MQTT).

The PM2.5 collocation rig::

    from labctl_sim import Rig, RigConfig, load_preset

    rig = Rig(RigConfig(host="127.0.0.1", port=1883, start=1_780_272_000.0, seed=42,
                        speed=300_000, until_s=30 * 86400, preset=load_preset("pm25-collocation")))
    stats = await rig.run(stop_event)   # until stop_event is set; stats per device key

or from a shell: ``labctl-sim --port 1883 --speed 300000 --until 30d --stats stats.json``.
"""

from labctl_sim.device import DeviceClock, DeviceEvent, DeviceOptions, Endpoint, SimDevice
from labctl_sim.models import (
    DeviceModel,
    DeviceSpec,
    OpticalParams,
    ReferenceParams,
    RigPreset,
    builtin_presets,
    load_preset,
    pm25_collocation,
)
from labctl_sim.rig import Rig, RigConfig, write_stats
from labctl_sim.world import World, WorldParams

__all__ = [
    "DeviceClock",
    "DeviceEvent",
    "DeviceModel",
    "DeviceOptions",
    "DeviceSpec",
    "Endpoint",
    "OpticalParams",
    "ReferenceParams",
    "Rig",
    "RigConfig",
    "RigPreset",
    "SimDevice",
    "World",
    "WorldParams",
    "builtin_presets",
    "load_preset",
    "pm25_collocation",
    "write_stats",
]
