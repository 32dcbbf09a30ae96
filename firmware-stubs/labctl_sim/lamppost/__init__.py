"""Simulated smart-lamppost nodes speaking ``labctl/1`` over MQTT.

A node carries a dimmable luminaire with an energy meter, environment sensors (from the rig's
shared :class:`~labctl_sim.world.World`), a traffic counter, road noise and a radio link; it
takes commands (``set_level``, ``set_schedule``, ``get_status``, ``reboot``, ``republish``)
and can inject faults (see :class:`FaultParams`).

This package's ``__init__`` exports only the data models, because :mod:`labctl_sim.models`
imports them for its presets; the running parts live in submodules:

* :mod:`labctl_sim.lamppost.model` — ``LamppostModel``: state and deterministic samples;
* :mod:`labctl_sim.lamppost.node` — ``LamppostNode``: one node on MQTT;
* :mod:`labctl_sim.lamppost.fleet` — ``LamppostFleet``: many nodes in one event loop;
* :mod:`labctl_sim.lamppost.power`, :mod:`~labctl_sim.lamppost.schedule`,
  :mod:`~labctl_sim.lamppost.solar`, :mod:`~labctl_sim.lamppost.street`,
  :mod:`~labctl_sim.lamppost.faults`: the models behind them.
"""

from labctl_sim.lamppost.power import LuminaireParams
from labctl_sim.lamppost.schedule import Period, ScheduleParams
from labctl_sim.lamppost.spec import FaultParams, LamppostSpec, LinkParams, Outage, StreetParams

__all__ = [
    "FaultParams",
    "LamppostSpec",
    "LinkParams",
    "LuminaireParams",
    "Outage",
    "Period",
    "ScheduleParams",
    "StreetParams",
]
