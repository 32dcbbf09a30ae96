"""``mqtt-sensor``: any ``labctl/1`` device that publishes telemetry over MQTT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from labctl.drivers import readings_of
from labctl.protocol.inbound import SampleIn
from labctl.protocol.payloads import Manifest
from labctl.readings import DeviceRef, Reading


class MqttSensorDriver:
    """Telemetry samples → readings, keeping only channels the manifest declares."""

    name: ClassVar[str] = "mqtt-sensor"

    def decode(
        self,
        device: DeviceRef,
        manifest: Manifest,
        stream: str,
        session: str,
        samples: Sequence[SampleIn],
        received_ns: int,
    ) -> list[Reading]:
        """One reading per sample; an undeclared channel rejects the message (ValueError)."""
        declared = {c.name for c in manifest.channels}
        used = set().union(*(s.v for s in samples))  # every key of every sample, in C
        if not used <= declared:
            raise ValueError(
                f"channel(s) {', '.join(sorted(used - declared))} not declared in the manifest "
                f"(declared: {', '.join(sorted(declared))})"
            )
        return readings_of(device, stream, session, samples, received_ns)
