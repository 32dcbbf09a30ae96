"""Settings of the lab broker (``lab_broker:`` in ``labctl.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class LabBrokerSettings(BaseModel):
    """Where the lab's Mosquitto listens and where its configuration is written.

    Three listeners: a plain one on loopback for the controller and lab tools, and two TLS
    ones for vendors (password over TLS, and mutual TLS with a lab-CA client certificate).
    """

    model_config = ConfigDict(extra="forbid")

    config_dir: Path | None = None
    """Where ``labctl broker config`` writes mosquitto.conf, ACLs, password files and
    certificates; default ``{data_dir}/lab-broker/mosquitto``."""
    local_bind: str = "127.0.0.1"
    local_port: int = Field(default=1883, ge=1, le=65535)
    vendor_bind: str = "0.0.0.0"  # noqa: S104 - vendors' devices reach the lab over the network
    vendor_password_port: int = Field(default=8883, ge=1, le=65535)
    """TLS listener where vendors authenticate with username and password."""
    vendor_cert_port: int = Field(default=8884, ge=1, le=65535)
    """Mutual-TLS listener where the client certificate's CN is the vendor's username."""
    server_names: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"])
    """Host names and IP addresses in the broker's server certificate."""
    controller_username: str = "_labctl"
    """The controller's identity on the local listener (``_`` is reserved for the lab, so it
    can never be a vendor's name). ``broker.username`` in the settings overrides it."""
    cert_days: int = Field(default=365, ge=1, le=3650)
    """Validity of issued vendor certificates."""
