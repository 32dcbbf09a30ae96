"""What a lamppost node did: delivery (as every simulated device) plus faults and commands."""

from __future__ import annotations

from dataclasses import dataclass

from labctl_sim.buffer import DeviceStats


@dataclass
class NodeStats(DeviceStats):
    """Delivery counters of :class:`~labctl_sim.buffer.DeviceStats` plus the node's own."""

    lost: int = 0
    """Samples the message-loss fault never sent (their seq left a gap)."""
    discarded_offline: int = 0
    """Samples produced while disconnected by a node without store and forward."""
    lost_reboot: int = 0
    """Samples still buffered when the node rebooted (RAM)."""
    outages: int = 0
    """Network outages the fault plan injected."""
    reboots: int = 0
    requests: int = 0
    """Command requests received."""
    executed: int = 0
    rejected: int = 0
    expired: int = 0
    """Requests ignored because their deadline had passed by the node's clock."""
    duplicates: int = 0
    """Requests whose id was already known (answered again, not executed again)."""
    ignored_rebooting: int = 0
    responses_dropped: int = 0
    """Final responses the drop-response fault withheld."""
    responses_lost: int = 0
    """Responses that could not be published (no connection)."""
    lost_network: int = 0
    """Samples the rig's network conditions lost (never sent; their seq left a gap)."""
    responses_dropped_network: int = 0
    """Final responses the rig's network conditions lost."""

    def as_dict(self) -> dict[str, object]:
        """The JSON shape written to the stats file."""
        out = super().as_dict()
        out.update(
            {
                name: getattr(self, name)
                for name in (
                    "lost", "discarded_offline", "lost_reboot", "outages", "reboots",
                    "requests", "executed", "rejected", "expired", "duplicates",
                    "ignored_rebooting", "responses_dropped", "responses_lost",
                    "lost_network", "responses_dropped_network",
                )
            }
        )
        return out
