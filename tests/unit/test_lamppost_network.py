"""Network conditions of the simulated lamppost links: parsing, determinism, node behaviour.

The draws are checked against independent references: scipy's binomial test for the loss
rate and the Kolmogorov–Smirnov test against the uniform distribution for the jitter.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import orjson
import pytest
from labctl_sim.device import DeviceClock, Endpoint
from labctl_sim.lamppost.model import LamppostModel
from labctl_sim.lamppost.network import (
    CLEAR,
    CONDITIONS_FILTER,
    NetworkConditions,
    NetworkLink,
    SharedConditions,
    parse_conditions,
)
from labctl_sim.lamppost.node import LamppostNode
from labctl_sim.lamppost.spec import LamppostSpec
from labctl_sim.world import World
from scipy import stats

from labctl.trial.conditions import sim_conditions_topic

START = 1_780_272_000.0


def _link(seed: int = 7, key: str = "acme/lp-1", **conditions: float) -> NetworkLink:
    return NetworkLink(SharedConditions(NetworkConditions(**conditions)), seed, key)


def _node(**conditions: float) -> LamppostNode:
    spec = LamppostSpec(
        vendor="acme", id="lp-1", model="LP", serial="1", command_latency_s=0.0
    )
    return LamppostNode(
        spec, World(42, START, 86400), DeviceClock.starting_now(START, 1.0),
        Endpoint("127.0.0.1", 1), seed=3, span_s=3600,
        conditions=SharedConditions(NetworkConditions(**conditions)),
    )


# --- parsing ----------------------------------------------------------------------------------


def test_the_topic_is_the_one_the_trial_runner_publishes_on() -> None:
    assert CONDITIONS_FILTER == "lab/v1/_sim/+/conditions"
    assert sim_conditions_topic("sim").split("/")[:3] == CONDITIONS_FILTER.split("/")[:3]


def test_parse_valid_and_cleared_conditions() -> None:
    # The exact payload RigConditions publishes (orjson of a dict of floats or ints).
    got = parse_conditions(orjson.dumps({"loss_pct": 5, "delay_ms": 100.0, "jitter_ms": 20}))
    assert got == NetworkConditions(loss_pct=5.0, delay_ms=100.0, jitter_ms=20.0)
    assert got is not None and got.delaying
    assert parse_conditions(b'{"loss_pct": 12.5}') == NetworkConditions(loss_pct=12.5)
    assert parse_conditions(b"") is CLEAR and not CLEAR.delaying  # the empty retained message
    assert parse_conditions(b"{}") == CLEAR


def test_unknown_keys_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        got = parse_conditions(b'{"delay_ms": 50, "bandwidth_kbps": 64, "light": "dusk"}')
    assert got == NetworkConditions(delay_ms=50.0)
    assert "ignoring unknown keys bandwidth_kbps, light" in caplog.text


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"loss_pct": ',
        b"[5, 100]",
        b"42",
        b'{"loss_pct": 101}',
        b'{"loss_pct": -1}',
        b'{"delay_ms": -5}',
        b'{"delay_ms": 60001}',
        b'{"jitter_ms": 1e9}',
        b'{"loss_pct": "5"}',
        b'{"delay_ms": true}',
        b'{"delay_ms": null}',
        b'{"loss_pct": 5, "delay_ms": -1}',
    ],
)
def test_bad_messages_are_ignored_whole(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    shared = SharedConditions(NetworkConditions(loss_pct=3.0))
    with caplog.at_level(logging.WARNING):
        assert not shared.apply(payload)
    assert shared.current == NetworkConditions(loss_pct=3.0)  # the old ones stay in force
    assert shared.ignored == 1 and shared.updates == 0
    assert "network conditions ignored" in caplog.text


def test_apply_replaces_and_clears() -> None:
    shared = SharedConditions()
    assert shared.apply(b'{"loss_pct": 50}', "lab/v1/_sim/sim/conditions")
    assert shared.current.loss_pct == 50.0
    assert shared.apply(b'{"delay_ms": 300}')  # a new message replaces, it does not merge
    assert shared.current == NetworkConditions(delay_ms=300.0)
    assert shared.apply(b"") and shared.current == CLEAR and shared.updates == 3


# --- draws ------------------------------------------------------------------------------------


def test_loss_is_a_deterministic_function_of_seed_key_and_index() -> None:
    ks = range(50_000)
    a = [_link(loss_pct=10).lost(k) for k in ks]
    link = _link(loss_pct=10)
    assert [link.lost(k) for k in reversed(ks)][::-1] == a  # not of the order asked
    assert a != [_link(seed=8, loss_pct=10).lost(k) for k in ks]
    assert a != [_link(key="acme/lp-2", loss_pct=10).lost(k) for k in ks]
    # The rate: an exact binomial test (scipy) does not reject p = 0.10.
    assert stats.binomtest(sum(a), len(a), 0.10).pvalue > 1e-3
    # One uniform per sample, compared with the rate: a lower rate loses a subset.
    five = [_link(loss_pct=5).lost(k) for k in ks]
    assert not any(f and not t for f, t in zip(five, a, strict=True)) and sum(five) < sum(a)
    assert not any(_link().lost(k) for k in range(1000))
    assert all(_link(loss_pct=100).lost(k) for k in range(1000))


def test_lost_responses_depend_on_the_command_and_the_answer() -> None:
    link = _link(loss_pct=30)
    drops = [link.drop_response(f"cmd-{i}", "final-0") for i in range(4000)]
    assert drops == [_link(loss_pct=30).drop_response(f"cmd-{i}", "final-0") for i in range(4000)]
    assert stats.binomtest(sum(drops), len(drops), 0.30).pvalue > 1e-3
    again = [link.drop_response(f"cmd-{i}", "final-1") for i in range(4000)]
    assert again != drops  # a repeated answer gets its own draw
    assert not any(_link(delay_ms=100).drop_response(f"c{i}", "final-0") for i in range(500))


def test_delay_is_uniform_within_the_jitter_and_deterministic() -> None:
    link = _link(delay_ms=100, jitter_ms=20)
    d = np.array([link.telemetry_delay_s(k) for k in range(20_000)])
    assert d.min() >= 0.080 and d.max() <= 0.120
    # Kolmogorov–Smirnov against U(0.08, 0.12) (scipy's uniform: loc, scale).
    assert stats.kstest(d, "uniform", args=(0.080, 0.040)).pvalue > 1e-3
    assert list(d[:100]) == [_link(delay_ms=100, jitter_ms=20).telemetry_delay_s(k)
                             for k in range(100)]
    r = [link.response_delay_s(f"c{i}", "accepted") for i in range(2000)]
    assert stats.kstest(r, "uniform", args=(0.080, 0.040)).pvalue > 1e-3
    assert _link(delay_ms=300).response_delay_s("x", "final-0") == pytest.approx(0.3)
    # Jitter larger than the delay: never negative (clipped at 0).
    wide = [_link(delay_ms=10, jitter_ms=50).telemetry_delay_s(k) for k in range(2000)]
    assert min(wide) == 0.0 and max(wide) <= 0.060
    assert _link(loss_pct=50).telemetry_delay_s(1) == 0.0


def test_the_link_follows_the_shared_conditions() -> None:
    shared = SharedConditions()
    link = NetworkLink(shared, 7, "acme/lp-1")
    assert not any(link.lost(k) for k in range(200))
    shared.apply(b'{"loss_pct": 50}')
    assert 60 < sum(link.lost(k) for k in range(200)) < 140
    shared.apply(b"")
    assert not any(link.lost(k) for k in range(200))


# --- a node under conditions (no broker: a fake client records what it publishes) -------------


class _Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, str]] = []

    async def publish(self, topic: str, payload: bytes, **_: object) -> None:
        self.sent.append((time.monotonic(), topic.split("/")[-2], orjson.loads(payload)["status"]))


def test_lost_samples_use_their_seq_and_are_the_predicted_ones() -> None:
    node = _node(loss_pct=50)
    samples = LamppostModel(node.spec, node.model.world, START, 3).next(400)
    node._append(samples)
    kept = [b.seq for b in node._buffer.front(1000)]
    predicted = [k for k in range(400) if not _link(3, "acme/lp-1", loss_pct=50).lost(k)]
    assert kept == predicted and node._seq == 400  # every sample used its seq
    assert node.stats.lost_network == 400 - len(kept) and node.stats.lost == 0
    assert stats.binomtest(node.stats.lost_network, 400, 0.5).pvalue > 1e-3


def test_delayed_samples_leave_at_their_due_time_plus_the_delay() -> None:
    node = _node(delay_ms=300)
    node._append(node.model.next(5))
    batch = node._buffer.front(10)
    due = [node.clock.t0 + node.model.sample_time(b.k) - START for b in batch]
    # Just before the third sample's release: two may go, the third waits ~10 ms.
    out, wait = node._released(batch, due[2] + 0.3 - 0.01)
    assert [b.k for b in out] == [0, 1] and wait == pytest.approx(0.01, abs=1e-6)
    out, wait = node._released(batch, due[4] + 0.3 + 1e-6)
    assert len(out) == 5 and wait == 0.0


async def test_responses_wait_for_the_delay_in_order_while_the_node_works() -> None:
    node = _node(delay_ms=150, jitter_ms=100)
    wire = _Wire()
    t0 = time.monotonic()
    n = 40
    async with asyncio.TaskGroup() as tg:
        node._group, node._client = tg, wire  # type: ignore[assignment]
        for i in range(n):
            body = {"id": f"c{i}", "op": "set_level", "params": {"level": i},
                    "deadline": time.time() + 5}
            node._on_request(f"lab/v1/acme/lp-1/cmd/c{i}/req", orjson.dumps(body))
        await asyncio.sleep(0.6)
        node._group = None
    assert len(wire.sent) == 2 * n
    # One connection: a final answer never overtakes its `accepted`, though its own delay
    # is often the shorter one (with no latency, about half the time).
    for i in range(n):
        assert [s for _, cid, s in wire.sent if cid == f"c{i}"] == ["accepted", "succeeded"]
    link = node.link
    quicker = sum(link.response_delay_s(f"c{i}", "final-0")
                  < link.response_delay_s(f"c{i}", "accepted") for i in range(n))
    assert quicker >= 10
    times = [t - t0 for t, _, _ in wire.sent]
    # Each answer waits at least its own draw (≥ 50 ms); the final one is not held behind a
    # second full delay (≤ 250 ms + scheduling): the node works while `accepted` travels.
    assert min(times) >= 0.05 - 0.005
    assert max(times) < 0.25 + 0.08


async def test_lost_final_responses_are_counted_and_accepted_still_goes() -> None:
    node = _node(loss_pct=50)
    wire = _Wire()
    async with asyncio.TaskGroup() as tg:
        node._group, node._client = tg, wire  # type: ignore[assignment]
        for i in range(40):
            body = {"id": f"c{i}", "op": "noop", "params": {}, "deadline": time.time() + 5}
            node._on_request(f"lab/v1/acme/lp-1/cmd/c{i}/req", orjson.dumps(body))
        await asyncio.sleep(0.1)
        node._group = None
    link = _link(3, "acme/lp-1", loss_pct=50)
    expected_lost = {f"c{i}" for i in range(40) if link.drop_response(f"c{i}", "final-0")}
    finals = {cid for _, cid, s in wire.sent if s == "succeeded"}
    assert finals == {f"c{i}" for i in range(40)} - expected_lost and expected_lost
    assert sum(s == "accepted" for _, _, s in wire.sent) == 40
    assert node.stats.responses_dropped_network == len(expected_lost)
    assert node.stats.executed == 40  # carried out: only the answer was lost
