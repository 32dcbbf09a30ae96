"""The command-response evaluator on constructed command outcomes and power readings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy import optimize, stats

from labctl.evaluators.base import ObservingEvaluator, Subject, evaluator_registry
from labctl.evaluators.command_response import (
    CommandResponseEvaluator,
    CommandResponseOptions,
    PowerCurve,
)
from labctl.evaluators.result import EvaluationResult, SubjectResult
from labctl.observations import CommandObserved, Observation, ReadingObserved, WindowObserved
from labctl.trial.criteria import Criterion
from labctl.trial.spec import TrialSpec

W0 = 1_780_000_000.0  # wall clock of the first command
GOOD = Subject("acme/good", "dut", vendor="acme", device="good", model="LP-1")
BAD = Subject("nimbus/bad", "dut", vendor="nimbus", device="bad", model="NB-7")
CURVE = PowerCurve(rated_w=120.0, standby_w=3.0, gamma=1.0)


def command(
    subject: str,
    i: int,
    published: float,
    latency: float,
    status: str = "succeeded",
    *,
    op: str = "ping",
    params: dict[str, float] | None = None,
    expect: str = "succeeded",
    deadline: float = 5.0,
) -> CommandObserved:
    finished = published + (deadline if status == "timeout" else latency)
    return CommandObserved(
        subject=subject,
        command_id=f"c{i}",
        op=op,
        params=params or {},
        status=status,  # type: ignore[arg-type]
        accepted=status != "rejected",
        published_at=published,
        finished_at=finished,
        deadline_s=deadline,
        expect=expect,
    )


def window(edge: str, at: float, conditions: dict[str, float] | None = None) -> WindowObserved:
    # A real-time rig: the device clock is the wall clock.
    return WindowObserved(edge, "measure", at, at, conditions or {})  # type: ignore[arg-type]


def power(subject: str, seq: int, at: float, watts: float) -> ReadingObserved:
    return ReadingObserved(subject, "node", "s1", seq, at - 0.05, at, {"power": watts, "level": 0})


def run(ev: CommandResponseEvaluator, observations: Sequence[Observation]) -> EvaluationResult:
    for obs in observations:
        ev.observe(obs)
    return ev.result()


def only(result: EvaluationResult, key: str) -> SubjectResult:
    return next(s for s in result.subjects if s.subject == key)


def values(s: SubjectResult) -> dict[str, float | None]:
    return {m.name: m.value for m in s.metrics}


# --- success, latency, deadline misses --------------------------------------------------------


def test_success_rate_latency_percentiles_and_deadline_misses() -> None:
    rng = np.random.default_rng(11)
    # 200 commands: 188 succeeded, 4 failed, 3 rejected (one of them expected), 5 timeouts.
    statuses = ["succeeded"] * 188 + ["failed"] * 4 + ["rejected"] * 3 + ["timeout"] * 5
    order = rng.permutation(len(statuses))
    latencies = rng.lognormal(np.log(0.25), 0.6, len(statuses))
    obs: list[Observation] = []
    expected_ok = 0
    answered: list[float] = []
    first_rejected = True
    for i, k in enumerate(order):
        status = statuses[k]
        expect = "succeeded"
        if status == "rejected" and first_rejected:
            expect, first_rejected = "rejected", False  # a step checking a rejection
        expected_ok += status == expect
        if status != "timeout":
            answered.append(float(latencies[i]))
        obs.append(command(GOOD.key, i, W0 + 10 * i, float(latencies[i]), status, expect=expect))
    ev = CommandResponseEvaluator(
        [GOOD],
        {"success_rate": Criterion(min=0.99), "latency_p95": Criterion(max=1.0)},
    )
    assert isinstance(ev, ObservingEvaluator)
    s = only(run(ev, obs), GOOD.key)
    v = values(s)
    assert v["commands"] == 200
    assert (v["succeeded"], v["failed"], v["rejected"], v["timeout"]) == (188, 4, 3, 5)
    assert expected_ok == 189
    assert v["success_rate"] == pytest.approx(189 / 200)
    assert v["deadline_misses"] == 5
    assert v["deadline_miss_rate"] == pytest.approx(5 / 200)
    ref = np.percentile(np.array(answered), [50, 95, 99])
    assert [v["latency_p50"], v["latency_p95"], v["latency_p99"]] == pytest.approx(list(ref))
    assert v["latency_max"] == pytest.approx(max(answered))
    ci = s.metric("success_rate")
    assert ci is not None and ci.ci95 is not None
    wilson = stats.binomtest(189, 200).proportion_ci(confidence_level=0.95, method="wilson")
    assert ci.ci95 == pytest.approx((wilson.low, wilson.high), abs=1e-9)
    by = {c.metric: c for c in s.criteria}
    assert not by["success_rate"].passed  # 0.945 < 0.99
    assert by["latency_p95"].passed == (ref[1] <= 1.0)
    assert s.passed is False


def test_no_commands_fails_rather_than_passes() -> None:
    ev = CommandResponseEvaluator([GOOD], {"success_rate": Criterion(min=0.99)})
    s = only(ev.result(), GOOD.key)
    assert values(s)["success_rate"] is None
    assert not s.passed


# --- dimming accuracy -------------------------------------------------------------------------

LEVELS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 50, 25]
STEP = 20.0  # wall seconds between commands


def dimming_observations(
    subject: str,
    applied_fraction: float,
    curve: PowerCurve,
    *,
    noise_w: float = 0.0,
    spikes: bool = False,
    seed: int = 0,
) -> list[Observation]:
    """For each level: a set_level command, then a 15-s measured window with 1-Hz power
    readings of the level the node really applies. The first two readings (ramp, within the
    2-s settle time) and readings after the window still show the previous level."""
    rng = np.random.default_rng(seed)

    def watts(level: float) -> float:
        return curve.standby_w + curve.rated_w * (level / 100.0) ** curve.gamma

    obs: list[Observation] = []
    seq = 0
    previous = 0.0
    for i, level in enumerate(LEVELS):
        p = W0 + STEP * i
        obs.append(command(subject, i, p, 0.3, op="set_level", params={"level": level}))
        obs.append(window("start", p + 0.4))
        for j in range(16):
            at = p + 0.5 + j
            settled = at > p + 0.3 + 2.0
            real = applied_fraction * (level if settled else previous)
            w = watts(real) + (noise_w * rng.standard_normal() if noise_w else 0.0)
            if spikes and j == 7:
                w += 40.0  # a meter glitch: the median must not care
            obs.append(power(subject, seq, at, w))
            seq += 1
        obs.append(window("end", p + 16.0))
        previous = level
    return obs


def test_a_node_applying_70_percent_of_the_level_is_caught() -> None:
    ev = CommandResponseEvaluator(
        [BAD],
        {"dimming_error_max_abs": Criterion(max=5.0)},
        options=CommandResponseOptions(power=CURVE),
    )
    s = only(run(ev, dimming_observations(BAD.key, 0.7, CURVE)), BAD.key)
    v = values(s)
    # Noise-free readings of 0.7 · L invert exactly to 0.7 · L: error = −0.3 · L per command.
    errors = np.array([-0.3 * level for level in LEVELS])
    assert v["dimming_n"] == len(LEVELS)
    assert v["dimming_error_mean"] == pytest.approx(float(errors.mean()))
    assert v["dimming_error_max_abs"] == pytest.approx(30.0)
    assert v["dimming_rmse"] == pytest.approx(float(np.sqrt(np.mean(errors**2))))
    assert not s.passed


def test_a_healthy_noisy_node_passes_and_a_glitch_does_not_matter() -> None:
    ev = CommandResponseEvaluator(
        [GOOD],
        {"dimming_error_max_abs": Criterion(max=5.0), "success_rate": Criterion(min=0.99)},
        options=CommandResponseOptions(power=CURVE),
    )
    obs = dimming_observations(GOOD.key, 1.0, CURVE, noise_w=1.5, spikes=True, seed=3)
    s = only(run(ev, obs), GOOD.key)
    v = values(s)
    assert v["dimming_n"] == len(LEVELS)
    assert v["dimming_error_max_abs"] is not None and v["dimming_error_max_abs"] < 2.5
    assert s.passed


def test_readings_before_settling_and_after_the_window_are_not_used() -> None:
    """Three settled readings against four ramp readings and four after the window: the
    median would move if either were counted."""
    ev = CommandResponseEvaluator(
        [BAD],
        {"dimming_error_max_abs": Criterion(max=5.0)},
        options=CommandResponseOptions(power=CURVE, settle_s=2.0),
    )
    p = W0
    obs: list[Observation] = [
        command(BAD.key, 0, p, 0.5, op="set_level", params={"level": 80}),
        window("start", p + 0.6),
    ]
    ramp = [p + 0.7, p + 1.2, p + 1.8, p + 2.4]  # finished at p + 0.5: settled from p + 2.5
    settled = [p + 3.0, p + 4.0, p + 5.0]
    after = [p + 6.5, p + 7.0, p + 7.5, p + 8.0]
    seq = 0
    for at in ramp:
        obs.append(power(BAD.key, seq, at, 3.0))  # still at level 0
        seq += 1
    for at in settled:
        obs.append(power(BAD.key, seq, at, 3.0 + 120.0 * 0.8))
        seq += 1
    obs.append(window("end", p + 6.0))
    for at in after:
        obs.append(power(BAD.key, seq, at, 3.0))
        seq += 1
    obs.append(command(BAD.key, 1, p + 9.0, 0.5, op="ping"))
    v = values(only(run(ev, obs), BAD.key))
    assert v["dimming_n"] == 1
    assert v["dimming_error_max_abs"] == pytest.approx(0.0, abs=1e-9)


def test_power_curve_inversion_matches_a_root_finder() -> None:
    curve = PowerCurve(rated_w=150.0, standby_w=4.0, gamma=2.2)

    def p(level: float) -> float:
        return 4.0 + 150.0 * (level / 100.0) ** 2.2

    for level in (0.0, 3.0, 17.5, 50.0, 83.0, 100.0):
        watts = p(level)
        ref = 0.0 if level == 0 else optimize.brentq(lambda x, w=watts: p(x) - w, 0.0, 100.0)
        assert curve.level(watts) == pytest.approx(ref, abs=1e-7)
    assert curve.level(1.0) == 0.0  # below standby: clipped
    assert curve.level(500.0) == 100.0  # above full power: clipped


# --- breakdown by condition -------------------------------------------------------------------


def test_breakdown_names_the_loss_level_where_latency_fails() -> None:
    """Twelve commands per loss level, each followed by its measured window; latency grows
    with loss. The baseline windows set no condition (loss 0 by the option default)."""
    rng = np.random.default_rng(5)
    plan = {0.0: 0.2, 5.0: 1.6, 10.0: 2.5}  # loss % → typical latency (s)
    obs: list[Observation] = []
    by_loss: dict[float, list[float]] = {}
    t = W0
    i = 0
    for loss, typical in plan.items():
        conditions = {} if loss == 0 else {"loss_pct": loss}
        for _ in range(12):
            lat = float(typical * rng.uniform(0.8, 1.2))
            by_loss.setdefault(loss, []).append(lat)
            obs.append(command(GOOD.key, i, t, lat))
            obs.append(window("start", t + 3.0, conditions))
            obs.append(window("end", t + 8.0, conditions))
            t += 10.0
            i += 1
    ev = CommandResponseEvaluator(
        [GOOD],
        {"latency_p95": Criterion(max=1.0), "success_rate": Criterion(min=0.99)},
        options=CommandResponseOptions(condition_defaults={"loss_pct": 0.0}),
    )
    s = only(run(ev, obs), GOOD.key)
    bins = [b for b in s.breakdown if b.condition == "loss_pct"]
    assert [b.label for b in bins] == ["loss = 0 %", "loss = 5 %", "loss = 10 %"]
    assert [b.n for b in bins] == [12, 12, 12]
    for b, loss in zip(bins, plan, strict=True):
        assert b.metrics["latency_p95"] == pytest.approx(np.percentile(by_loss[loss], 95))
    assert [b.failed for b in bins] == [[], ["latency_p95"], ["latency_p95"]]
    (lim,) = s.limitations
    assert lim.condition == "loss_pct" and lim.bin == "loss ≥ 5 %"
    assert lim.criteria == ["latency_p95"]
    assert lim.text.startswith("acme/good fails latency_p95 (")
    assert lim.text.endswith("target ≤ 1) when loss ≥ 5 %")


# --- spec ------------------------------------------------------------------------------------


def spec(**over: object) -> TrialSpec:
    data: dict[str, object] = {
        "trial": "lamppost-commands",
        "title": "Lamppost command response",
        "kind": "command-response",
        "devices": {"nodes": {"role": "dut", "channel": "power"}},
        "duration": "10m",
        "criteria": {"success_rate": {"min": 0.99}, "dimming_error_max_abs": {"max": 5}},
        "options": {"power": {"rated_w": 120, "standby_w": 3, "gamma": 1.0}, "settle_s": 3},
    }
    data.update(over)
    return TrialSpec.model_validate(data)


def test_from_spec_reads_options_and_explains_mistakes() -> None:
    registry = evaluator_registry()
    factory = registry.get("command-response")
    ev = factory.from_spec(spec(), [GOOD])
    assert isinstance(ev, CommandResponseEvaluator)
    assert ev.options.settle_s == 3.0 and ev.options.power == CURVE
    with pytest.raises(ValueError, match=r"no metric called 'latency_p90'.*latency_p95"):
        factory.from_spec(spec(criteria={"latency_p90": {"max": 1}}), [GOOD])
    with pytest.raises(ValueError, match=r"options\.power\.rated_w"):
        factory.from_spec(spec(options={"power": {"rated_w": -1}}), [GOOD])
    with pytest.raises(ValueError, match=r"options\.calibrate: unknown option"):
        factory.from_spec(spec(options={"power": {"rated_w": 1}, "calibrate": True}), [GOOD])
    with pytest.raises(ValueError, match="need the luminaire's power curve"):
        factory.from_spec(spec(options={}), [GOOD])
