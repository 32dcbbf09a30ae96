"""Controller configuration: a YAML file plus ``LABCTL_*`` environment overrides.

Embedded defaults run the whole lab on one machine: a private broker child, spool-only
metrics and a SQLite run store in a data directory. ``LABCTL_DATA_DIR`` moves everything, so
runs in different data directories never see each other. Settings objects are built once per
command and passed down; nothing reads configuration from a global.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from labctl.metrics.influx import InfluxEndpoint
from labctl.security.settings import LabBrokerSettings
from labctl.serve.dashboard.settings import DashboardSettings


class BrokerSettings(BaseModel):
    """Where the controller's MQTT bus connects."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["embedded", "external"] = "embedded"
    """``embedded``: start a private ``mosquitto`` child; ``external``: use ``host``/``port``."""
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(default=30, ge=5)
    session_expiry_s: int = Field(default=86400, ge=1)
    """How long the broker keeps the controller's queued QoS 1 messages while it is away."""
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    """MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may have in flight."""


class SimSettings(BaseModel):
    """The simulated rig (``firmware-stubs/labctl_sim``)."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "pm25-collocation"
    seed: int = 42
    speed: float = Field(default=300_000.0, gt=0)
    """Device seconds per wall second."""
    start: str = "2026-06-01T00:00:00Z"
    batch: int = Field(default=60, ge=1, le=10_000)


class SerialDeviceSettings(BaseModel):
    """A device on a serial port (``rig.serial`` list); it joins trials like an MQTT device."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    """Stable port path, e.g. ``/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0``."""
    driver: str = Field(min_length=1)
    """A serial driver (``pms5003``, ``sds011``, ``line`` or one from a driver package)."""
    vendor: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    model: str = ""
    """Defaults to the driver name."""
    serial: str = ""
    baud: int | None = Field(default=None, gt=0)
    """Defaults to the driver's (9600 for PMS5003 and SDS011)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Driver-specific, e.g. ``{mode: passive, poll_interval_s: 2}`` for a PMS5003."""
    silence_s: float = Field(default=30.0, gt=0)
    """Wall seconds without a valid frame before the port is reopened (the device is offline
    meanwhile)."""
    backoff_min_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=5.0, gt=0)
    """Reopen delays after an unplug or a failed open (doubling from min to max)."""


class RigSettings(BaseModel):
    """The rig a controller drives."""

    model_config = ConfigDict(extra="forbid")

    name: str = "sim"
    simulated: bool = True
    sim: SimSettings = Field(default_factory=SimSettings)
    roles: dict[str, str] = Field(default_factory=lambda: {"lab/ref-t640": "reference"})
    """Role of each device (``vendor/device``); devices not listed are devices under test."""
    default_role: str = "dut"
    preflight_timeout_s: float = Field(default=30.0, gt=0)
    """How long a run waits for its devices to come online before it is a rig fault."""
    serial: list[SerialDeviceSettings] = Field(default_factory=list)
    """Serial devices of the rig (a simulated rig adds those of its preset itself)."""


class MetricsSettings(BaseModel):
    """The metrics pipeline: the spool is always on; TSDB endpoints drain it."""

    model_config = ConfigDict(extra="forbid")

    segment_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    influx: list[InfluxEndpoint] = Field(default_factory=list)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    """How long ``labctl run`` waits at the end for TSDBs to catch up before it leaves the
    rest in the spool for the next drain."""


class ReportSettings(BaseModel):
    """Reports written after a run (``labctl report`` writes them on demand)."""

    model_config = ConfigDict(extra="forbid")

    after_run: bool = True
    """Write the report when ``labctl run`` ends (next to the run's data)."""
    format: Literal["html", "pdf"] = "html"
    """``pdf`` also writes the HTML beside it; it needs headless Chromium."""
    chromium: Path | None = None
    """The Chromium/Chrome binary for PDFs; by default ``chromium`` on the PATH."""
    pdf_timeout_s: float = Field(default=90.0, gt=0)


class Settings(BaseSettings):
    """Everything a controller needs to know. See ``labctl.example.yaml``."""

    model_config = SettingsConfigDict(
        env_prefix="LABCTL_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("labctl")))
    controller: str = Field(default_factory=lambda: _default_controller())
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    rig: RigSettings = Field(default_factory=RigSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    lab_broker: LabBrokerSettings = Field(default_factory=LabBrokerSettings)
    """The lab's production Mosquitto (``labctl broker config``, ``labctl vendor``)."""
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    """The read-only web dashboard of ``labctl serve`` (who may sign in)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > config file > defaults.
        path = _config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def spool_dir(self) -> Path:
        """Where the spool's segment files live."""
        return self.data_dir / "spool"

    @property
    def store_path(self) -> Path:
        """The SQLite run store."""
        return self.data_dir / "runs.sqlite3"

    @property
    def broker_dir(self) -> Path:
        """Config and persistence of the private broker."""
        return self.data_dir / "broker"


class ConfigError(Exception):
    """Configuration that cannot be used; ``str()`` is the message for the user."""


def _config_path() -> Path | None:
    explicit = os.environ.get("LABCTL_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"LABCTL_CONFIG names {path}, which is not a file")
        return path
    local = Path("labctl.yaml")
    return local if local.is_file() else None


def _default_controller() -> str:
    host = "".join(c if c.isalnum() else "-" for c in socket.gethostname().lower())
    return f"ctl-{host.strip('-')[:40] or 'local'}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from file, environment and ``overrides``; errors in words."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
