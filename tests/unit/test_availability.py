"""The availability evaluator against a hand-computed schedule of injected outages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from labctl.evaluators.availability import AvailabilityEvaluator, AvailabilityOptions
from labctl.evaluators.base import Subject, evaluator_registry
from labctl.evaluators.result import EvaluationResult, SubjectResult
from labctl.observations import Observation, PresenceObserved, ReadingObserved, WindowObserved
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

T = 1_780_000_000.0  # device time of the window start
W0 = T + 0.5  # controller wall clock at the window start (the device clock is 0.5 s behind)
NODE = Subject("acme/lp-01", "dut", vendor="acme", device="lp-01", model="LP-1", interval_s=1.0)

# The schedule: a 1-hour window at 1 Hz (device seconds from T).
#   session A online before the window; samples at 0..599 s, seq 0..599
#   outage 1: 600–660 s — the broker's Last Will `lost` for A (its payload ts is A's
#             connect time, T − 10, and must not be used)
#   session B online at 660 s; samples at 660..1799 s, seq 0..1139; seqs 100–102 dropped;
#             a stale `lost` for A arrives at 700 s (must be ignored); seqs 10–19 re-delivered
#   outage 2: 1800–1920 s — `offline` from B
#   session C online at 1920 s; samples at 1920..3599 s, seq 0..1679; seqs 500–501 dropped
WINDOW_S = 3600.0
OUTAGES_S = (60.0, 120.0)
ONLINE_S = WINDOW_S - sum(OUTAGES_S)  # 3420 s
UPTIME = ONLINE_S / WINDOW_S  # 0.95
EXPECTED_SEQ = 600 + 1140 + 1680  # max − min + 1 per session: 3420
DROPPED = 5
RECEIVED = EXPECTED_SEQ - DROPPED  # 3415
COMPLETENESS = RECEIVED / EXPECTED_SEQ  # 0.998538…
COMPLETENESS_NOMINAL = RECEIVED / (WINDOW_S * 1.0)  # 0.948611…
RECONNECTS = 2  # sessions B and C after A
FAILURES = 2
MTBF = ONLINE_S / FAILURES  # 1710 s
MTTR = sum(OUTAGES_S) / len(OUTAGES_S)  # 90 s


def schedule(
    speed: float = 1.0,
) -> tuple[list[Observation], list[float]]:
    """The observations of the schedule above in arrival order, with the wall clock running
    ``speed`` times slower than the device clock; and the data latencies of first arrivals."""

    def wall(ts: float) -> float:
        return W0 + (ts - T) / speed

    obs: list[tuple[float, Observation]] = []  # (arrival, observation)
    latencies: list[float] = []

    def samples(session: str, start_s: int, count: int, dropped: set[int]) -> None:
        for seq in range(count):
            if seq in dropped:
                continue
            ts = T + start_s + seq
            lag = 0.15 + 0.01 * (seq % 7)
            obs.append(
                (
                    wall(ts) + lag,
                    ReadingObserved(
                        NODE.key, "node", session, seq, ts, wall(ts) + lag, {"power": 60.0}
                    ),
                )
            )
            latencies.append(wall(ts) + lag - ts)

    def presence(state: str, session: str, ts_s: float, payload_ts: float | None) -> None:
        at = wall(T + ts_s)
        obs.append((at, PresenceObserved(NODE.key, state, session, at, payload_ts)))

    presence("online", "A", -10, T - 10)
    samples("A", 0, 600, set())
    presence("lost", "A", 600, T - 10)  # Last Will: payload ts = A's connect time
    presence("online", "B", 660, T + 660)
    presence("lost", "A", 700, T - 10)  # stale: B is the current session
    samples("B", 660, 1140, {100, 101, 102})
    for seq in range(10, 20):  # re-delivered (e.g. a QoS 1 resend): duplicates
        ts = T + 660 + seq
        at = wall(T + 1000)
        obs.append((at, ReadingObserved(NODE.key, "node", "B", seq, ts, at, {"power": 60.0})))
    presence("offline", "B", 1800, T + 1800)
    presence("online", "C", 1920, T + 1920)
    samples("C", 1920, 1680, {500, 501})
    obs.append((wall(T), WindowObserved("start", "measure", T, wall(T))))
    obs.append((wall(T + 3600), WindowObserved("end", "measure", T + 3600, wall(T + 3600))))
    obs.sort(key=lambda x: x[0])  # stable: arrival order
    return [o for _, o in obs], latencies


def run(ev: AvailabilityEvaluator, observations: Sequence[Observation]) -> EvaluationResult:
    for o in observations:
        ev.observe(o)
    return ev.result()


def values(s: SubjectResult) -> dict[str, float | None]:
    return {m.name: m.value for m in s.metrics}


CRITERIA = {
    "uptime": Criterion(min=0.99),
    "completeness": Criterion(min=0.998),
    "latency_p99": Criterion(max=2.0),
}


def test_hand_computed_schedule() -> None:
    observations, latencies = schedule()
    result = run(AvailabilityEvaluator([NODE], CRITERIA), observations)
    (s,) = result.subjects
    v = values(s)
    assert v["window_s"] == WINDOW_S
    assert v["uptime"] == pytest.approx(UPTIME)
    assert v["online_s"] == pytest.approx(ONLINE_S)
    assert v["samples"] == RECEIVED and v["expected"] == EXPECTED_SEQ
    assert v["missing"] == DROPPED
    assert v["completeness"] == pytest.approx(COMPLETENESS)
    assert v["completeness_nominal"] == pytest.approx(COMPLETENESS_NOMINAL)
    assert v["reconnects"] == RECONNECTS
    assert v["outages"] == len(OUTAGES_S) and v["failures"] == FAILURES
    assert v["mtbf"] == pytest.approx(MTBF)
    assert v["mttr"] == pytest.approx(MTTR)
    ref = np.percentile(np.array(latencies), [50, 99])
    assert [v["latency_p50"], v["latency_p99"]] == pytest.approx(list(ref))
    outcome = {c.metric: c.passed for c in s.criteria}
    assert outcome == {"uptime": False, "completeness": True, "latency_p99": True}
    assert any("1 offline/lost change(s) of a replaced session ignored" in n for n in result.notes)


def test_accelerated_rig_maps_arrivals_to_device_time_and_notes_latency() -> None:
    """At 60× the Last Will's arrival maps to device time through the window edges; data
    latency then mixes clocks, so the result says so, and `latency: false` turns it off."""
    observations, _ = schedule(speed=60.0)
    result = run(AvailabilityEvaluator([NODE], {"uptime": Criterion(min=0.9)}), observations)
    v = values(result.subjects[0])
    assert v["uptime"] == pytest.approx(UPTIME)
    assert v["mtbf"] == pytest.approx(MTBF) and v["mttr"] == pytest.approx(MTTR)
    assert any("×60 device speed" in n for n in result.notes)
    off = AvailabilityEvaluator(
        [NODE], {"uptime": Criterion(min=0.9)}, options=AvailabilityOptions(latency=False)
    )
    result = run(off, observations)
    v = values(result.subjects[0])
    assert v["latency_p50"] is None and v["latency_p99"] is None
    assert v["completeness"] == pytest.approx(COMPLETENESS)
    assert any("latency: false" in n for n in result.notes)


def test_without_failures_mtbf_is_none_and_everything_is_complete() -> None:
    obs: list[Observation] = [
        PresenceObserved(NODE.key, "online", "A", W0 - 5, T - 5),
        WindowObserved("start", "measure", T, W0),
    ]
    obs += [
        ReadingObserved(NODE.key, "node", "A", k, T + k, W0 + k + 0.2, {"power": 1.0})
        for k in range(600)
    ]
    obs.append(WindowObserved("end", "measure", T + 600, W0 + 600))
    v = values(run(AvailabilityEvaluator([NODE], CRITERIA), obs).subjects[0])
    assert (v["uptime"], v["completeness"], v["completeness_nominal"]) == (1.0, 1.0, 1.0)
    assert (v["reconnects"], v["outages"], v["failures"]) == (0, 0, 0)
    assert v["mtbf"] is None and v["mttr"] is None


# --- breakdown by condition -------------------------------------------------------------------


def three_windows(outage_in_last: bool) -> list[Observation]:
    """Three 20-min windows at 1 Hz with 5-min gaps: loss 0 % (set by no one: the option
    default), 5 % with a 60-s outage, 10 % with a 120-s outage (or none)."""
    obs: list[Observation] = [PresenceObserved(NODE.key, "online", "s0", W0 - 5, T - 5)]
    plan: list[tuple[dict[str, float], float | None]] = [
        ({}, None),
        ({"loss_pct": 5.0}, 60.0),
        ({"loss_pct": 10.0}, 120.0 if outage_in_last else None),
    ]
    session, seq = "s0", 0
    for i, (conditions, outage) in enumerate(plan):
        lo = T + i * 1500.0
        obs.append(WindowObserved("start", "fault", lo, W0 + lo - T, conditions))
        down = (lo + 300.0, lo + 300.0 + outage) if outage else None
        for k in range(1200):
            ts = lo + k
            if down and down[0] <= ts < down[1]:
                continue
            if down and ts == down[1]:
                obs.append(PresenceObserved(NODE.key, "online", f"s{i}", W0 + ts - T, ts))
                session, seq = f"s{i}", 0
            obs.append(ReadingObserved(NODE.key, "node", session, seq, ts, W0 + ts - T + 0.1, {}))
            seq += 1
            if down and ts == down[0] - 1:
                obs.append(PresenceObserved(NODE.key, "lost", session, W0 + down[0] - T, None))
        obs.append(WindowObserved("end", "fault", lo + 1200, W0 + lo + 1200 - T, conditions))
    return obs


@pytest.mark.parametrize(
    ("outage_in_last", "where", "uptimes"),
    [(True, "loss ≥ 5 %", [1.0, 1140 / 1200, 1080 / 1200]), (False, "loss = 5 %", None)],
)
def test_breakdown_names_where_uptime_first_fails(
    outage_in_last: bool, where: str, uptimes: list[float] | None
) -> None:
    ev = AvailabilityEvaluator(
        [NODE],
        {"uptime": Criterion(min=0.99), "completeness": Criterion(min=0.999)},
        options=AvailabilityOptions(condition_defaults={"loss_pct": 0.0}),
    )
    s = run(ev, three_windows(outage_in_last)).subjects[0]
    bins = [b for b in s.breakdown if b.condition == "loss_pct"]
    assert [b.label for b in bins] == ["loss = 0 %", "loss = 5 %", "loss = 10 %"]
    if uptimes is not None:
        assert [b.metrics["uptime"] for b in bins] == pytest.approx(uptimes)
        # Each outage is followed by a new session, so no seq is missing: completeness holds.
        assert [b.metrics["completeness"] for b in bins] == [1.0, 1.0, 1.0]
        assert [b.metrics["reconnects"] for b in bins] == [0, 1, 1]
        assert values(s)["uptime"] == pytest.approx((3600 - 180) / 3600)
    (lim,) = s.limitations
    assert (lim.condition, lim.bin, lim.criteria) == ("loss_pct", where, ["uptime"])
    assert lim.text == f"acme/lp-01 fails uptime (0.95, target ≥ 0.99) when {where}"


def test_bins_from_the_spec_edges() -> None:
    ev = AvailabilityEvaluator(
        [NODE],
        {"uptime": Criterion(min=0.99)},
        options=AvailabilityOptions(condition_defaults={"loss_pct": 0.0}),
        bins={"loss_pct": [2.0, 8.0]},
    )
    s = run(ev, three_windows(True)).subjects[0]
    assert [b.label for b in s.breakdown] == ["loss < 2 %", "2 % ≤ loss < 8 %", "loss ≥ 8 %"]
    assert s.limitations[0].bin == "loss ≥ 2 %"


# --- spec ------------------------------------------------------------------------------------


def spec(**over: object) -> TrialSpec:
    data: dict[str, object] = {
        "trial": "lamppost-availability",
        "title": "Lamppost availability under network faults",
        "kind": "availability",
        "devices": {"nodes": {"role": "dut", "channel": "power"}},
        "duration": "1h",
        "criteria": {"uptime": {"min": 0.99}, "completeness": {"min": 0.999}},
    }
    data.update(over)
    return TrialSpec.model_validate(data)


def test_from_spec_explains_mistakes() -> None:
    factory: Callable[..., object] = evaluator_registry().get("availability").from_spec
    assert isinstance(factory(spec(options={"latency": False}), [NODE]), AvailabilityEvaluator)
    with pytest.raises(ValueError, match=r"no metric called 'mtbf_h'.*completeness_nominal"):
        factory(spec(criteria={"mtbf_h": {"min": 1}}), [NODE])
    with pytest.raises(ValueError, match="latency: false"):
        factory(spec(criteria={"latency_p99": {"max": 2}}, options={"latency": False}), [NODE])
    with pytest.raises(ValueError, match=r"options\.latency"):
        factory(spec(options={"latency": "sometimes"}), [NODE])
    with pytest.raises(ValueError, match="strictly ascending"):
        factory(spec(bins={"loss_pct": [5, 1]}), [NODE])


def test_result_while_the_window_is_still_open() -> None:
    """Called mid-window, the window ends at the latest sample seen (device time 999 s):
    one outage of 60 s so far, sessions A and B, seqs 100–102 of B missing."""
    observations, _ = schedule()
    cut = W0 + 1000.0  # wall clock: the sample of 999 s has arrived, that of 1000 s not yet
    early = [o for o in observations if _arrival(o) < cut]
    v = values(run(AvailabilityEvaluator([NODE], CRITERIA), early).subjects[0])
    assert v["window_s"] == 999.0
    # Until the window ends, its end edge pairs the latest sample's device time with its
    # arrival, so the Last Will's arrival maps to device time within one data latency.
    assert v["uptime"] == pytest.approx((999.0 - 60.0) / 999.0, abs=0.25 / 999.0)
    assert v["outages"] == 1 and v["reconnects"] == 1
    # Windows are [start, end): the sample at 999 s sits on the provisional end.
    assert v["expected"] == 600 + (998 - 660 + 1) and v["missing"] == 3


def _arrival(o: Observation) -> float:
    if isinstance(o, ReadingObserved):
        return o.received_at
    if isinstance(o, PresenceObserved | WindowObserved):
        return o.at
    raise AssertionError(o)


def test_limitation_words_when_even_the_benign_bin_fails() -> None:
    from labctl.evaluators.condition_bins import BinFigures, ConditionBin, judge_breakdown
    from labctl.trial.criteria import Criterion

    def rows(values: list[float]) -> list[BinFigures]:
        return [
            BinFigures(ConditionBin("loss_pct", f"loss = {x:g} %", x, x, True), 100, {"c": v})
            for x, v in zip((0, 5, 20), values, strict=True)
        ]

    crit = {"c": Criterion(min=0.99)}
    _, lim = judge_breakdown("v/d", rows([0.995, 0.98, 0.90]), crit, {}, 10)
    assert lim is not None and lim.text.endswith("when loss ≥ 5 %")
    _, lim = judge_breakdown("v/d", rows([0.98, 0.97, 0.90]), crit, {}, 10)
    assert lim is not None and lim.text.endswith("in every condition judged (from loss = 0 %)")
    _, lim = judge_breakdown("v/d", rows([0.98, 0.995, 0.90]), crit, {}, 10)
    assert lim is not None and lim.text.endswith("even when loss = 0 %")
