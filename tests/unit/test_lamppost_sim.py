"""The lamppost node simulator without MQTT: power, energy, sun, schedule, faults, commands.

References: numpy's trapezoid rule for the energy register; a published sunrise/sunset table
(whattime.city, "1st of each month", for London, Hong Kong and Sydney) for the solar clock.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
from labctl_sim.buffer import Buffered
from labctl_sim.lamppost.commands import (
    PARAMS,
    Rejection,
    SetLevelParams,
    command_specs,
    validate,
)
from labctl_sim.lamppost.faults import FaultPlan
from labctl_sim.lamppost.model import BLOCK, CHANNEL_NAMES, LamppostModel
from labctl_sim.lamppost.node import LamppostNode
from labctl_sim.lamppost.power import (
    EnergyMeter,
    LuminaireParams,
    active_power,
    driver_efficiency,
    power_at,
)
from labctl_sim.lamppost.presets import lamppost_specs, scale_specs
from labctl_sim.lamppost.schedule import Period, ScheduleEngine, ScheduleParams
from labctl_sim.lamppost.solar import sun_times
from labctl_sim.lamppost.spec import FaultParams, LamppostSpec, Outage
from labctl_sim.models import DeviceSpec, ReferenceParams, RigPreset, builtin_presets, load_preset
from labctl_sim.world import World
from pydantic import ValidationError

from labctl.protocol.inbound import decode_batch
from labctl.protocol.payloads import Manifest, TelemetryBatch

START = 1_780_272_000.0  # 2026-06-01T00:00:00Z = 08:00 at the world's UTC+8 site
HK = (22.32, 114.17)


def _world(days: float = 3.0) -> World:
    return World(42, START, days * 86400)


def _spec(**kw: object) -> LamppostSpec:
    base: dict[str, object] = {"vendor": "acme", "id": "lp-1", "model": "LP", "serial": "1"}
    base.update(kw)
    return LamppostSpec.model_validate(base)


def _schedule(*periods: tuple[str, str, int]) -> ScheduleParams:
    return ScheduleParams(
        periods=[Period.model_validate({"from": a, "to": b, "level": lv}) for a, b, lv in periods],
        lat=HK[0],
        lon=HK[1],
    )


def _column(rows: list[list[float]], name: str) -> np.ndarray:
    i = CHANNEL_NAMES.index(name)
    return np.array([r[i] for r in rows])


# --- power model ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        LuminaireParams(),
        LuminaireParams(rated_w=90, standby_w=2.1, gamma=1.15, efficiency_full=0.88,
                        efficiency_knee=0.08),
        LuminaireParams(rated_w=150, standby_w=0.0, gamma=2.2, efficiency_full=0.95,
                        efficiency_knee=0.3),
    ],
)
def test_power_rises_with_level_and_driver_losses_grow_at_light_load(
    params: LuminaireParams,
) -> None:
    levels = np.arange(0, 101, dtype=np.float64)
    p = active_power(levels, params)
    assert p[0] == pytest.approx(params.standby_w)
    assert np.all(np.diff(p) > 0), "input power must rise strictly with the level"
    assert p[-1] == pytest.approx(params.standby_w + params.rated_w / params.efficiency_full)
    eff = driver_efficiency(levels[1:], params)
    assert np.all(np.diff(eff) > 0) and eff[-1] == pytest.approx(params.efficiency_full)
    assert eff[9] < 0.8 * params.efficiency_full  # 10 %: the driver wastes a lot more
    # The node's per-sample scalar path is the same formula.
    scalar = np.array([power_at(float(x), params) for x in levels])
    np.testing.assert_allclose(scalar, p, rtol=1e-12)


def test_energy_register_is_the_trapezoid_integral_of_power() -> None:
    model = LamppostModel(_spec(initial_level=100), _world(), START, seed=3)
    rows: list[list[float]] = []
    ts: list[float] = []
    for level, n in ((100, 900), (35, 1200), (0, 600), (70, 900)):
        model.set_level(level)
        s = model.next(n)
        rows += s.rows
        ts += s.ts
    power, energy = _column(rows, "power"), _column(rows, "energy")
    t = np.array(ts)
    reference = np.concatenate(([0.0], np.cumsum(np.diff(t) * (power[1:] + power[:-1]) / 2)))
    assert np.trapezoid(power, t) / 3.6e6 == pytest.approx(energy[-1], abs=2e-5)
    # At every sample, not just the end (power is rounded to 0.01 W on the wire).
    np.testing.assert_allclose(energy, reference / 3.6e6, atol=2e-5)
    assert np.all(np.diff(energy) >= 0)
    assert energy[-1] > 0.02  # about 26 Wh over the hour at these levels
    # A reboot resets the register (it is in RAM); the next sample starts from 0.
    model.boot()
    assert model.next(1).rows[0][CHANNEL_NAMES.index("energy")] == 0.0


def test_energy_meter_ignores_time_going_backwards() -> None:
    m = EnergyMeter()
    m.add(100.0, 3600.0)
    assert m.add(101.0, 3600.0) == pytest.approx(0.001)
    assert m.add(100.5, 3600.0) == pytest.approx(0.001)  # a clock step back adds nothing


# --- sun and schedule -------------------------------------------------------------------------

# (place, lat, lon, [(month, UTC offset h, sunrise, sunset)]), 1st of the month, local time;
# from whattime.city's "sunrise and sunset on the 1st of each month" tables. Months next to a
# daylight-saving change whose date varies by year are left out.
SUN_TABLE = [
    ("London", 51.51, -0.13, [
        (1, 0, "08:07", "16:01"), (2, 0, "07:42", "16:48"), (3, 0, "06:49", "17:39"),
        (4, 1, "06:39", "19:31"), (5, 1, "05:35", "20:22"), (6, 1, "04:51", "21:07"),
        (7, 1, "04:47", "21:22"), (8, 1, "05:23", "20:52"), (9, 1, "06:12", "19:52"),
        (10, 1, "07:00", "18:43"), (11, 0, "06:52", "16:37"), (12, 0, "07:43", "15:57"),
    ]),
    ("Hong Kong", 22.32, 114.17, [
        (1, 8, "07:04", "17:51"), (2, 8, "07:03", "18:12"), (3, 8, "06:46", "18:28"),
        (4, 8, "06:17", "18:39"), (5, 8, "05:52", "18:50"), (6, 8, "05:40", "19:04"),
        (7, 8, "05:43", "19:12"), (8, 8, "05:56", "19:05"), (9, 8, "06:07", "18:42"),
        (10, 8, "06:15", "18:13"), (11, 8, "06:28", "17:47"), (12, 8, "06:47", "17:39"),
    ]),
    ("Sydney", -33.87, 151.21, [
        (1, 11, "05:48", "20:10"), (2, 11, "06:17", "20:02"), (3, 11, "06:43", "19:34"),
        (5, 10, "06:30", "17:16"), (6, 10, "06:52", "16:55"), (7, 10, "07:02", "16:57"),
        (8, 10, "06:49", "17:16"), (9, 10, "06:15", "17:37"), (11, 11, "05:56", "19:23"),
        (12, 11, "05:38", "19:51"),
    ]),
]


@pytest.mark.parametrize(("place", "lat", "lon", "rows"), SUN_TABLE, ids=[p[0] for p in SUN_TABLE])
def test_sunrise_and_sunset_match_a_published_table_within_5_minutes(
    place: str, lat: float, lon: float, rows: list[tuple[int, int, str, str]]
) -> None:
    days = [(date(2025, m, 1) - date(1970, 1, 1)).days for m, *_ in rows]
    rise, sset = sun_times(days, lat, lon)
    for (month, off, want_rise, want_set), r, s in zip(rows, rise, sset, strict=True):
        tz = timezone(timedelta(hours=off))
        for got, want in ((r, want_rise), (s, want_set)):
            local = datetime.fromtimestamp(float(got), tz)
            hh, mm = map(int, want.split(":"))
            expected = datetime(2025, month, 1, hh, mm, tzinfo=tz)
            assert abs((local - expected).total_seconds()) <= 300, (place, month, local, want)


def test_polar_night_and_day_do_not_break_the_clock() -> None:
    day = (date(2025, 12, 21) - date(1970, 1, 1)).days
    rise, sset = sun_times([day], 78.2, 15.6)  # Svalbard: no sunrise at the winter solstice
    assert np.isfinite(rise).all() and sset[0] - rise[0] < 60.0
    rise, sset = sun_times([day + 182], 78.2, 15.6)  # midnight sun
    assert sset[0] - rise[0] > 86400 - 60


def test_schedule_dusk_to_dawn_with_midnight_dimming() -> None:
    engine = ScheduleEngine(_schedule(("dusk", "00:00", 100), ("00:00", "dawn", 40)), 8.0)
    day = engine.local_day(START)  # 2026-06-01 local
    rise, sset = engine.sun(day)
    next_rise, _ = engine.sun(day + 1)
    local_midnight = (day + 1) * 86400 - 8 * 3600
    expect = [
        (rise + 60, 0), (START + 4 * 3600, 0), (sset - 60, 0), (sset + 60, 100),
        (local_midnight - 60, 100), (local_midnight + 60, 40), (next_rise - 60, 40),
        (next_rise + 60, 0),
    ]
    got = engine.levels([t for t, _ in expect])
    assert got.tolist() == [float(v) for _, v in expect]
    # Hong Kong in June: sunset near 19:10 and sunrise near 05:40 local.
    assert 19.0 < ((sset + 8 * 3600) % 86400) / 3600 < 19.3
    assert 5.5 < ((next_rise + 8 * 3600) % 86400) / 3600 < 5.8


def test_schedule_wraps_midnight_and_first_period_wins() -> None:
    engine = ScheduleEngine(_schedule(("22:00", "06:00", 30), ("20:00", "23:00", 80)), 0.0)
    midnight = 20_000 * 86400.0
    at = {h: midnight + h * 3600 for h in (1.0, 5.99, 6.01, 19.9, 21.0, 22.5, 23.5)}
    got = dict(zip(at, engine.levels(list(at.values())).tolist(), strict=True))
    assert got == {1.0: 30, 5.99: 30, 6.01: 0, 19.9: 0, 21.0: 80, 22.5: 30, 23.5: 30}


def test_schedule_runs_on_the_device_clock_so_a_skewed_node_switches_early() -> None:
    sched = _schedule(("dusk", "dawn", 100))
    engine = ScheduleEngine(sched, 8.0)
    _, sset = engine.sun(engine.local_day(START))
    world = _world()
    honest = LamppostModel(_spec(schedule=sched), world, START, seed=1)
    ahead = LamppostModel(
        _spec(schedule=sched, faults=FaultParams(clock_skew_s=600)), world, START, seed=1
    )
    k = honest.due(sset - 300) - 1  # the last sample 5 minutes before sunset (true time)
    level = CHANNEL_NAMES.index("level")
    honest.skip_to(k)
    ahead.skip_to(k)
    assert honest.next(1).rows[0][level] == 0.0
    sample = ahead.next(1)
    assert sample.rows[0][level] == 100.0
    assert sample.ts[0] == pytest.approx(honest.sample_time(k) + 600, abs=1e-3)


@pytest.mark.parametrize(
    "bad",
    [
        {"periods": [{"from": "dusk", "to": "dusk", "level": 50}], "lat": 1.0, "lon": 1.0},
        {"periods": [{"from": "25:00", "to": "dawn", "level": 50}], "lat": 1.0, "lon": 1.0},
        {"periods": [{"from": "dusk", "to": "dawn", "level": 101}], "lat": 1.0, "lon": 1.0},
        {"periods": [{"from": "dusk", "to": "dawn", "level": 50}], "lat": 91.0, "lon": 1.0},
        {"periods": [], "lat": 1.0, "lon": 1.0},
        {"periods": [{"from": "dusk", "to": "dawn", "level": 50}], "lon": 1.0},
    ],
)
def test_bad_schedules_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(Rejection) as err:
        validate("set_schedule", bad)
    assert err.value.code == "bad_params"


# --- command validation on the node -------------------------------------------------------------


def test_node_command_validation() -> None:
    assert validate("set_level", {"level": 0}) == SetLevelParams(level=0)
    for params in ({"level": 150}, {"level": -1}, {"level": "50"}, {"level": 50.5}, {},
                   {"level": 5, "fade": 2}):
        with pytest.raises(Rejection) as err:
            validate("set_level", params)
        assert err.value.code == "bad_params"
        assert "level" in err.value.message or "fade" in err.value.message
    with pytest.raises(Rejection) as err:
        validate("fly", {})
    assert err.value.code == "unknown_op" and "set_level" in err.value.message
    with pytest.raises(Rejection):
        validate("reboot", {"now": True})
    specs = command_specs()
    assert [c.op for c in specs] == list(PARAMS)
    level_schema = next(c for c in specs if c.op == "set_level").params_schema
    assert level_schema["properties"]["level"]["maximum"] == 100


# --- faults -----------------------------------------------------------------------------------


def test_fault_plan_is_deterministic_for_a_seed() -> None:
    p = FaultParams(
        outages=(Outage(at_s=100, for_s=50), Outage(at_s=120, for_s=60)),
        outage_rate_per_h=2.0, outage_mean_s=30, message_loss_p=0.1, drop_response_p=0.3,
    )
    span = 1000 * 3600.0
    a, b = FaultPlan(p, 7, "acme/lp-1", span), FaultPlan(p, 7, "acme/lp-1", span)
    other_seed, other_node = FaultPlan(p, 8, "acme/lp-1", span), FaultPlan(p, 7, "acme/lp-2", span)
    assert a.outages == b.outages
    assert a.outages != other_seed.outages and a.outages != other_node.outages
    assert a.outages[0] == (100.0, 180.0)  # the two scheduled ones overlap: merged
    starts = np.array([w[0] for w in a.outages])
    ends = np.array([w[1] for w in a.outages])
    assert np.all(starts[1:] > ends[:-1]) and ends[-1] <= span + 10 * 3600
    # ~2 per hour over 1000 h: Poisson, so within 5 sd of 2000.
    assert abs(len(a.outages) - 2000) < 5 * np.sqrt(2000)
    assert a.outage_at(150.0) == (100.0, 180.0) and a.outage_at(99.0) is None
    assert a.next_outage(99.0) == (100.0, 180.0)

    ks = list(range(50_000))
    lost_a = [a.lost(k) for k in ks]
    assert lost_a == [b.lost(k) for k in ks]
    assert lost_a != [other_seed.lost(k) for k in ks]
    assert [a.lost(k) for k in reversed(ks)][::-1] == lost_a  # a function of k, not of order
    assert abs(np.mean(lost_a) - 0.1) < 0.01

    drops = [a.drop_response(f"cmd-{i}", 0) for i in range(2000)]
    assert drops == [b.drop_response(f"cmd-{i}", 0) for i in range(2000)]
    assert abs(np.mean(drops) - 0.3) < 0.05
    assert not FaultPlan(FaultParams(), 7, "x/y", span).drop_response("cmd-1", 0)


def test_samples_do_not_depend_on_chunking_or_skips() -> None:
    world = _world()
    sched = _schedule(("dusk", "00:00", 100), ("00:00", "dawn", 50))
    spec = _spec(schedule=sched, faults=FaultParams(wrong_level_factor=0.7))
    n = 5 * BLOCK + 7
    whole = LamppostModel(spec, world, START, seed=5).next(n)
    chunked = LamppostModel(spec, world, START, seed=5)
    rows = [r for size in (1, 2, BLOCK - 3, BLOCK + 1, 100, n) for r in chunked.next(size).rows]
    assert rows[:n] == whole.rows
    # Skipping (node off) leaves the command-independent channels of later samples unchanged.
    skipped = LamppostModel(spec, world, START, seed=5)
    skipped.skip_to(3 * BLOCK + 2)
    env = slice(CHANNEL_NAMES.index("temperature"), None)
    assert [r[env] for r in skipped.next(n - 3 * BLOCK - 2).rows] == [
        r[env] for r in whole.rows[3 * BLOCK + 2 :]
    ]
    different = LamppostModel(spec, world, START, seed=6).next(n)
    assert different.rows != whole.rows


def test_wrong_level_fault_reports_the_commanded_level_but_draws_less_power() -> None:
    world = _world()
    lum = LuminaireParams()
    healthy = LamppostModel(_spec(luminaire=lum), world, START, seed=2)
    faulty = LamppostModel(
        _spec(id="lp-2", luminaire=lum, faults=FaultParams(wrong_level_factor=0.7)),
        world, START, seed=2,
    )
    for m in (healthy, faulty):
        m.set_level(80)
    h, f = healthy.next(600).rows, faulty.next(600).rows
    assert set(_column(h, "level")) == set(_column(f, "level")) == {80.0}
    ph, pf = _column(h, "power").mean(), _column(f, "power").mean()
    assert ph == pytest.approx(float(active_power(80, lum)), rel=0.005)
    assert pf == pytest.approx(float(active_power(56, lum)), rel=0.005)
    assert ph - pf > 10.0


def test_channels_stay_in_physical_ranges_over_two_days() -> None:
    spec = lamppost_specs()[2]
    rows = LamppostModel(spec, _world(), START, seed=9).next(2 * 86400).rows
    col = {name: _column(rows, name) for name in CHANNEL_NAMES}
    assert set(col["level"]) == {0.0, 50.0, 100.0}  # the preset's midnight dimming
    assert set(col["lamp_on"]) == {0.0, 1.0}
    assert np.all(col["traffic"] >= 0) and np.all(col["traffic"] == np.round(col["traffic"]))
    assert col["noise"].min() > 20 and col["noise"].max() < 100
    assert np.all((col["rh"] >= 0) & (col["rh"] <= 100)) and np.all(col["pm25"] >= 0)
    assert np.all((col["link_quality"] >= 0) & (col["link_quality"] <= 100))
    hour = ((np.arange(col["traffic"].size) + 8 * 3600) // 3600) % 24  # local hour, UTC+8
    rush = col["traffic"][(hour == 8) | (hour == 18)].mean()
    night = col["traffic"][(hour >= 1) & (hour <= 4)].mean()
    assert rush > 10 * night  # vehicles per second, diurnal


# --- wire formats and presets -----------------------------------------------------------------


def test_manifest_and_telemetry_validate_against_the_protocol_models() -> None:
    spec = lamppost_specs()[0]
    model = LamppostModel(spec, _world(), START, seed=1)
    s = model.next(3)
    batch = [Buffered(k, "sess-1", i, ts, tuple(row))
             for i, (k, ts, row) in enumerate(zip(s.k, s.ts, s.rows, strict=True))]
    body = LamppostNode.batch_payload(batch)
    parsed = TelemetryBatch.model_validate_json(body)
    assert [x.seq for x in parsed.samples] == [0, 1, 2]
    assert set(parsed.samples[0].v) == set(CHANNEL_NAMES)
    assert decode_batch(body)[0] == "sess-1"
    assert orjson.loads(body)["samples"][1]["ts"] == s.ts[1]


def test_presets() -> None:
    four = load_preset("lampposts")
    assert {n.vendor for n in four.lampposts} == {"lumenta", "citylux"} and not four.devices
    assert sum(n.faults.wrong_level_factor is not None for n in four.lampposts) == 1
    assert len(load_preset("lampposts-scale", lamppost_nodes=400).lampposts) == 400
    assert len(builtin_presets()["lampposts-scale"].lampposts) == 100
    assert len(load_preset("pm25-collocation").devices) == 4  # the PM2.5 presets are unchanged
    assert len({n.key for n in scale_specs(400)}) == 400
    with pytest.raises(ValueError, match="at least one"):
        RigPreset(name="empty")
    ref = DeviceSpec(vendor="acme", id="lp-1", model="m", serial="s", role="reference",
                     error=ReferenceParams())
    with pytest.raises(ValueError, match="repeated: acme/lp-1"):
        RigPreset(name="dup", devices=(ref,), lampposts=(_spec(),))
    # A preset file round-trips (JSON), lampposts included.
    again = RigPreset.model_validate_json(four.model_dump_json(by_alias=True))
    assert again == four


def test_node_manifest_is_valid_and_small() -> None:
    from labctl_sim.device import DeviceClock, Endpoint

    spec = lamppost_specs()[0]
    clock = DeviceClock(start=START, speed=1.0, t0=0.0)
    node = LamppostNode(spec, _world(), clock, Endpoint("127.0.0.1", 1), seed=1, span_s=3600)
    raw = node.manifest("s-1").model_dump_json(by_alias=True).encode()
    assert len(raw) < 16 * 1024
    m = Manifest.model_validate_json(raw)
    assert [c.name for c in m.channels] == list(CHANNEL_NAMES)
    assert {c.op for c in m.commands} == set(PARAMS)
    with pytest.raises(ValidationError):
        Period.model_validate({"from": "dusk", "to": "dawn", "level": 50, "fade": 1})


class _Wire:
    """Stands in for the node's MQTT client: records what the node publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    async def publish(self, topic: str, payload: bytes, **_: object) -> None:
        self.sent.append((topic.split("/")[-2], orjson.loads(payload)))


async def test_repeated_ids_follow_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/protocol.md §8.4: a final answer again; a running copy ignored; a forgotten
    answer ``rejected``/``duplicate``; never executed twice."""
    import asyncio
    import time

    from labctl_sim.device import DeviceClock, Endpoint
    from labctl_sim.lamppost import node as node_module

    monkeypatch.setattr(node_module, "REMEMBER", 2)
    node = LamppostNode(
        _spec(command_latency_s=0.0), _world(), DeviceClock.starting_now(START, 1.0),
        Endpoint("127.0.0.1", 1), seed=1, span_s=3600,
    )
    wire = _Wire()

    def request(cid: str, op: str = "noop", **params: object) -> None:
        body = {"id": cid, "op": op, "params": params, "deadline": time.time() + 5}
        node._on_request(f"lab/v1/acme/lp-1/cmd/{cid}/req", orjson.dumps(body))

    async with asyncio.TaskGroup() as tg:
        node._group, node._client = tg, wire  # type: ignore[assignment]
        request("slow", delay_ms=300)
        await asyncio.sleep(0.02)
        request("slow", delay_ms=300)  # still running: ignored, no second `accepted`
        await asyncio.sleep(0.5)
        request("slow", delay_ms=300)  # finished: the same final answer again
        for cid in ("b", "c"):
            request(cid)
        await asyncio.sleep(0.05)
        request("slow")  # its answer was pushed out by b and c: rejected, duplicate
        request("d", "set_level", level=150)
        request("d", "set_level", level=150)  # a rejection is an answer too
        await asyncio.sleep(0.05)
        node._group = None
    answers = [(cid, body["status"]) for cid, body in wire.sent]
    assert answers == [
        ("slow", "accepted"), ("slow", "succeeded"), ("slow", "succeeded"),
        ("b", "accepted"), ("c", "accepted"), ("b", "succeeded"), ("c", "succeeded"),
        ("slow", "rejected"), ("d", "rejected"), ("d", "rejected"),
    ]
    finals = [body for cid, body in wire.sent if cid == "slow" and body["status"] == "succeeded"]
    assert finals[0] == finals[1] == {"id": "slow", "status": "succeeded", "result": {"runs": 1}}
    assert wire.sent[7][1]["error"] == {
        "code": "duplicate", "message": "this id was seen before; its answer is gone"
    }
    assert node.stats.executed == 3 and node.stats.duplicates == 4
