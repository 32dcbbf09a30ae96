"""Device error models and rig presets: what each simulated instrument reports about the world.

The parameters are data (pydantic models), so a test or a trial can build any rig; the built-in
presets are returned fresh by :func:`builtin_presets`. A :class:`DeviceModel` turns a spec and
a :class:`~labctl_sim.world.World` into a deterministic stream of readings without any MQTT,
which is also how the unit tests check the error models.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from labctl_sim.aibox.spec import BoxSpec, default_boxes
from labctl_sim.lamppost.presets import DEFAULT_SCALE_NODES, lamppost_specs, scale_specs
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.world import FloatArray, World, WorldParams, stable_key

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]

CHANNELS: tuple[tuple[str, str], ...] = (("pm25", "µg/m³"), ("rh", "%"), ("temperature", "°C"))
"""Channels every PM2.5 simulator reports, with units, in sample order."""


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReferenceParams(_Params):
    """A federal-equivalent reference monitor (T640-like) with a met station beside it."""

    kind: Literal["reference"] = "reference"
    noise_rel: float = Field(default=0.02, ge=0)
    """PM2.5 noise standard deviation as a fraction of the true value…"""
    noise_abs: float = Field(default=0.3, ge=0)
    """…plus this many µg/m³."""
    rh_noise: float = Field(default=0.3, ge=0)
    temp_noise: float = Field(default=0.05, ge=0)


class OpticalParams(_Params):
    """A low-cost optical particle sensor.

    ``pm25 = (gain · true + offset) · growth(RH) + drift_per_day · days + noise``, clipped at 0,
    where ``growth(RH) = 1 + kappa · a / (1 − a)`` with ``a = min(RH, 99) / 100``: particles
    take up water and look bigger to the optics as the air nears saturation (κ-Köhler).
    """

    kind: Literal["optical"] = "optical"
    gain: float = Field(gt=0)
    offset: float
    kappa: float = Field(ge=0)
    noise_sd: float = Field(default=0.5, ge=0)
    drift_per_day: float = 0.0
    rh_bias: float = 0.0
    """Bias of the sensor's own humidity reading, in %RH."""
    temp_bias: float = 0.0
    """Bias of the sensor's own temperature reading (self-heating), in °C."""
    rh_noise: float = Field(default=0.5, ge=0)
    temp_noise: float = Field(default=0.1, ge=0)


ErrorParams = Annotated[ReferenceParams | OpticalParams, Field(discriminator="kind")]


class SerialFault(_Params):
    """A fault a serial simulator injects at a device time (seconds after the rig starts)."""

    at_s: float = Field(ge=0)
    kind: Literal["garbage", "bad_checksum", "truncated", "silence", "unplug"]
    count: int = Field(default=1, ge=1)
    """Bytes of garbage, or frames sent with a bad checksum / cut short."""
    for_s: float = Field(default=0.0, ge=0)
    """How long a silence or an unplug lasts, in device seconds."""


class SerialSim(_Params):
    """Makes a device a serial sensor on a pty instead of an MQTT device."""

    protocol: Literal["pms5003", "sds011"]
    polled: bool = False
    """The controller should poll it (PMS5003 passive / SDS011 query mode)."""
    faults: tuple[SerialFault, ...] = ()


class DeviceSpec(_Params):
    """One simulated device of a rig: identity, sampling and error model."""

    vendor: Name
    id: Name
    model: str
    serial: str
    role: Literal["reference", "dut"]
    error: ErrorParams
    hw_version: str = "sim"
    sw_version: str = "labctl-sim"
    rate_hz: float = Field(default=1 / 60, gt=0, le=1000)
    clock_offset_s: float = 0.0
    """Skew of the device clock: added to every timestamp it reports."""
    uart: SerialSim | None = None
    """Set for a serial sensor (a pty the controller opens) instead of an MQTT device."""

    @property
    def key(self) -> str:
        """``vendor/id``, the device's name in stats and in the rig."""
        return f"{self.vendor}/{self.id}"


class RigPreset(_Params):
    """A world and the devices that watch it (sensors and/or lamppost nodes)."""

    name: str
    world: WorldParams = Field(default_factory=WorldParams)
    devices: tuple[DeviceSpec, ...] = ()
    lampposts: tuple[LamppostSpec, ...] = ()
    """Lamppost nodes (:mod:`labctl_sim.lamppost`), run by the rig beside the devices."""
    aiboxes: tuple[BoxSpec, ...] = ()
    """Vendor AI camera boxes (:mod:`labctl_sim.aibox`); they need the rig's ``register``."""

    @model_validator(mode="after")
    def _unique(self) -> RigPreset:
        keys = (
            [d.key for d in self.devices]
            + [n.key for n in self.lampposts]
            + [b.key for b in self.aiboxes]
        )
        if not keys:
            raise ValueError("a preset needs at least one device or lamppost")
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
        if repeated:
            raise ValueError(f"device keys must be unique; repeated: {', '.join(repeated)}")
        return self


def pm25_collocation() -> RigPreset:
    """One reference and three candidates from two vendors (the ``pm25-collocation`` preset).

    AirSense AS-10 units are well behaved (slight over-read, little humidity growth) and pass the
    EPA targets in every humidity bin; the Nimbus NB-2 is calibrated for dry air but its optics
    see hygroscopic growth, so it fails once RH passes ~85 %.
    """
    return RigPreset(
        name="pm25-collocation",
        devices=(
            DeviceSpec(
                vendor="lab", id="ref-t640", model="T640-sim", serial="T640-SIM-0001",
                role="reference", error=ReferenceParams(),
            ),
            DeviceSpec(
                vendor="airsense", id="as10-0001", model="AS-10", serial="AS10-0001", role="dut",
                error=OpticalParams(
                    gain=1.04, offset=0.6, kappa=0.02, noise_sd=0.6, drift_per_day=0.01,
                    rh_bias=-1.5, temp_bias=0.8,
                ),
                clock_offset_s=0.4,
            ),
            DeviceSpec(
                vendor="airsense", id="as10-0002", model="AS-10", serial="AS10-0002", role="dut",
                error=OpticalParams(
                    gain=1.06, offset=0.8, kappa=0.02, noise_sd=0.6, drift_per_day=0.015,
                    rh_bias=1.0, temp_bias=0.6,
                ),
                clock_offset_s=-0.7,
            ),
            DeviceSpec(
                vendor="nimbus", id="nb2-0001", model="NB-2", serial="NB2-0001", role="dut",
                error=OpticalParams(
                    # Tuned with the real evaluator over seeds: within targets below 85 % RH,
                    # slope and RMSE fail on 1-hour pairs at RH ≥ 85 %.
                    gain=0.8, offset=0.5, kappa=0.15, noise_sd=1.0, drift_per_day=0.03,
                    rh_bias=3.0, temp_bias=1.5, rh_noise=1.0, temp_noise=0.2,
                ),
                clock_offset_s=2.5,
            ),
        ),
    )


def pm25_serial() -> RigPreset:
    """The reference, one MQTT candidate and two serial candidates (``pm25-serial``).

    The PMS5003 reports by itself and suffers line noise and a one-hour unplug; the SDS011 is
    polled and goes silent for half an hour. Both are judged beside the MQTT devices.
    """
    base = pm25_collocation().devices
    return RigPreset(
        name="pm25-serial",
        devices=(
            base[0],
            base[1],
            DeviceSpec(
                vendor="plantower", id="pms5003-0001", model="PMS5003", serial="PMS-0001",
                role="dut",
                error=OpticalParams(gain=1.1, offset=0.5, kappa=0.05, noise_sd=0.8),
                uart=SerialSim(
                    protocol="pms5003",
                    faults=(
                        SerialFault(at_s=2 * 3600, kind="garbage", count=40),
                        SerialFault(at_s=3 * 3600, kind="bad_checksum", count=3),
                        SerialFault(at_s=4 * 3600, kind="truncated", count=2),
                        SerialFault(at_s=12 * 3600, kind="unplug", for_s=3600),
                    ),
                ),
            ),
            DeviceSpec(
                vendor="nova", id="sds011-0001", model="SDS011", serial="SDS-0001", role="dut",
                error=OpticalParams(gain=0.95, offset=1.0, kappa=0.08, noise_sd=0.7),
                uart=SerialSim(
                    protocol="sds011",
                    polled=True,
                    faults=(SerialFault(at_s=6 * 3600, kind="silence", for_s=1800),),
                ),
            ),
        ),
    )


def lampposts() -> RigPreset:
    """Four lamppost nodes of two vendors, one dimming wrongly (the ``lampposts`` preset)."""
    return RigPreset(name="lampposts", lampposts=lamppost_specs())


def signboard_boxes() -> RigPreset:
    """Two vendors' AI boxes for signboard identification (the ``signboard-boxes`` preset):
    VisionX SignSight Edge S1 (fast) and CityVision UrbanEye Pro (robust)."""
    return RigPreset(name="signboard-boxes", aiboxes=tuple(default_boxes()))


def lampposts_scale(n: int = DEFAULT_SCALE_NODES) -> RigPreset:
    """``n`` lamppost nodes for load tests (the ``lampposts-scale`` preset)."""
    return RigPreset(name="lampposts-scale", lampposts=scale_specs(n))


def builtin_presets(lamppost_nodes: int = DEFAULT_SCALE_NODES) -> dict[str, RigPreset]:
    """The presets shipped with the simulator, by name (a fresh dict on every call).

    ``lamppost_nodes`` sizes ``lampposts-scale``.
    """
    return {
        p.name: p
        for p in (
            pm25_collocation(),
            pm25_serial(),
            lampposts(),
            lampposts_scale(lamppost_nodes),
            signboard_boxes(),
        )
    }


def load_preset(name_or_path: str, *, lamppost_nodes: int | None = None) -> RigPreset:
    """A built-in preset by name, or a preset file (``.json``, ``.yaml``/``.yml``).

    ``lamppost_nodes`` sizes the ``lampposts-scale`` preset (default 100).
    """
    presets = builtin_presets(lamppost_nodes or DEFAULT_SCALE_NODES)
    if name_or_path in presets:
        return presets[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return RigPreset.model_validate(data)
    raise ValueError(
        f"unknown preset {name_or_path!r}: use one of {', '.join(sorted(presets))} "
        "or a .json/.yaml preset file"
    )


def device_seed(world_seed: int, key: str) -> np.random.SeedSequence:
    """The seed of a device's own noise: the world seed plus its key, stable across processes."""
    return np.random.SeedSequence([world_seed, stable_key(key)])


def growth(rh: npt.ArrayLike, kappa: float) -> FloatArray:
    """Hygroscopic growth factor ``1 + κ · a / (1 − a)``, ``a = min(RH, 99) / 100``."""
    a = np.minimum(np.asarray(rh, dtype=np.float64), 99.0) / 100.0
    return np.asarray(1.0 + kappa * a / (1.0 - a), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Readings:
    """A run of consecutive samples of one device."""

    k: npt.NDArray[np.int64]
    """Sample index since the device started (sample ``k`` is taken at ``start + k / rate``)."""
    ts: FloatArray
    """Timestamps by the device clock (true time plus its offset)."""
    pm25: FloatArray
    rh: FloatArray
    temperature: FloatArray

    def __len__(self) -> int:
        return int(self.k.size)


class DeviceModel:
    """Deterministic readings of one device of a world.

    :meth:`next` hands out consecutive samples; each noise term has its own random stream,
    drawn one value per sample, so the readings do not depend on how the calls are chunked.
    """

    def __init__(self, spec: DeviceSpec, world: World, start: float | None = None) -> None:
        self.spec = spec
        self.world = world
        self.start = world.start if start is None else float(start)
        self.period = 1.0 / spec.rate_hz
        self._next_k = 0
        streams = device_seed(world.seed, spec.key).spawn(3)
        self._rng_pm, self._rng_rh, self._rng_t = (np.random.default_rng(s) for s in streams)

    @property
    def produced(self) -> int:
        """How many samples :meth:`next` has handed out."""
        return self._next_k

    def next(self, n: int) -> Readings:
        """The next ``n`` samples."""
        k = np.arange(self._next_k, self._next_k + n, dtype=np.int64)
        self._next_k += n
        t_true = self.start + k * self.period
        truth = self.world.sample(t_true)
        z_pm = self._rng_pm.standard_normal(n)
        z_rh = self._rng_rh.standard_normal(n)
        z_t = self._rng_t.standard_normal(n)
        p = self.spec.error
        if isinstance(p, ReferenceParams):
            pm = truth.pm25 + (p.noise_rel * truth.pm25 + p.noise_abs) * z_pm
            rh = truth.rh + p.rh_noise * z_rh
            temp = truth.temperature + p.temp_noise * z_t
        else:
            days = (t_true - self.start) / 86400.0
            pm = (
                (p.gain * truth.pm25 + p.offset) * growth(truth.rh, p.kappa)
                + p.drift_per_day * days
                + p.noise_sd * z_pm
            )
            rh = truth.rh + p.rh_bias + p.rh_noise * z_rh
            temp = truth.temperature + p.temp_bias + p.temp_noise * z_t
        # Real instruments report a fixed resolution; it also keeps the JSON short.
        return Readings(
            k=k,
            ts=np.round(t_true + self.spec.clock_offset_s, 3),
            pm25=np.round(np.maximum(pm, 0.0), 2).astype(np.float64),
            rh=np.round(np.clip(rh, 0.0, 100.0), 2).astype(np.float64),
            temperature=np.round(temp, 2),
        )
