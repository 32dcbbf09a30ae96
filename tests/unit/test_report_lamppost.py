"""Reports of command-response and availability runs: the evaluator's key figures reach the
page (sentences, per-device tables, breakdown and limitation)."""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Sequence

import numpy as np
import pytest

from labctl.evaluators.availability import AvailabilityEvaluator, AvailabilityOptions
from labctl.evaluators.base import Subject
from labctl.evaluators.command_response import (
    CommandResponseEvaluator,
    CommandResponseOptions,
    PowerCurve,
)
from labctl.evaluators.result import EvaluationResult
from labctl.observations import (
    CommandObserved,
    Observation,
    PresenceObserved,
    ReadingObserved,
    WindowObserved,
)
from labctl.report.build import build_report
from labctl.report.html import render_html
from labctl.report.inputs import ReportInputs
from labctl.report.numbers import num
from labctl.report.sections import section_registry
from labctl.store.records import DeviceInRun, RunRecord, SpecRef
from labctl.trial.criteria import Criterion

T = 1_780_000_000.0
NODE = Subject("acme/lp-01", "dut", vendor="acme", device="lp-01", model="LP-1", interval_s=1.0)


def record(kind: str, evaluation: EvaluationResult) -> RunRecord:
    return RunRecord(
        id="r1",
        trial="lamppost",
        title="Lamppost trial",
        kind=kind,
        rig="sim",
        spec=SpecRef(path="/nowhere/spec.yaml", sha256="0" * 64),
        status="passed" if evaluation.passed else "failed",
        exit_code=0 if evaluation.passed else 1,
        started_at=T,
        ended_at=T + 1200,
        devices=[
            DeviceInRun(
                key=NODE.key,
                vendor=NODE.vendor,
                device=NODE.device,
                role="dut",
                model=NODE.model,
                serial="S1",
                hw_version="1",
                sw_version="2.0",
                manifest_version=1,
                session="s0",
            )
        ],
        evaluation=evaluation,
        labctl_version="0",
        data_dir="/nowhere",
    )


def page(kind: str, evaluation: EvaluationResult) -> str:
    report = build_report(ReportInputs(record(kind, evaluation)), section_registry())
    return render_html(report)


def cell_value(html: str, key: str) -> float:
    m = re.search(rf'data-key="{re.escape(key)}" data-value="([^"]+)"', html)
    assert m is not None, f"no cell {key}"
    return float(m.group(1))


def feed(ev: CommandResponseEvaluator | AvailabilityEvaluator, obs: Sequence[Observation]) -> None:
    for o in obs:
        ev.observe(o)


def test_command_response_report() -> None:
    """20 commands per loss level (0 %, 5 %), each then measured; at 5 % loss latency
    exceeds 1 s and one command times out; every command sets a level the node applies."""
    obs: list[Observation] = []
    latencies: list[float] = []
    t, seq = T, 0
    for i in range(40):
        loss = 0.0 if i < 20 else 5.0
        timeout = i == 30
        lat = 0.1 + 0.01 * i + (1.5 if loss else 0.0)
        if not timeout:
            latencies.append(lat)
        level = float(5 * (i % 21))
        obs.append(
            CommandObserved(
                subject=NODE.key,
                command_id=f"c{i}",
                op="set_level",
                params={"level": level},
                status="timeout" if timeout else "succeeded",
                accepted=True,
                published_at=t,
                finished_at=t + (5.0 if timeout else lat),
                deadline_s=5.0,
            )
        )
        obs.append(WindowObserved("start", "m", t + 5.5, t + 5.5, {"loss_pct": loss}))
        for j in range(4):
            at = t + 8.0 + j
            watts = 3.0 + 120.0 * level / 100.0
            obs.append(ReadingObserved(NODE.key, "node", "s0", seq, at, at, {"power": watts}))
            seq += 1
        obs.append(WindowObserved("end", "m", t + 12.0, t + 12.0, {"loss_pct": loss}))
        t += 15.0
    ev = CommandResponseEvaluator(
        [NODE],
        {
            "success_rate": Criterion(min=0.95),
            "latency_p95": Criterion(max=1.0),
            "dimming_error_max_abs": Criterion(max=5.0),
        },
        options=CommandResponseOptions(power=PowerCurve(rated_w=120.0, standby_w=3.0)),
    )
    feed(ev, obs)
    html = page("command-response", ev.result())
    text = htmlmod.unescape(html)
    p95 = float(np.percentile(latencies, 95))
    assert cell_value(html, "commands/acme/lp-01/success_rate") == pytest.approx(39 / 40)
    assert cell_value(html, "commands/acme/lp-01/latency_p95") == pytest.approx(p95)
    assert cell_value(html, "commands/acme/lp-01/deadline_misses") == 1
    assert cell_value(html, "dimming/acme/lp-01/dimming_n") == 39
    assert cell_value(html, "dimming/acme/lp-01/dimming_error_max_abs") == pytest.approx(0.0)
    assert "97.5 % of 40 commands answered as expected" in text
    figures = "/".join(num(float(x)) for x in np.percentile(latencies, [50, 95, 99]))
    assert f"latency p50/p95/p99 {figures} s, 1 deadline miss;" in text
    assert "dimming error at most 0 pp (mean 0 pp) over 39 levels" in text
    assert "stops meeting latency p95 when loss ≥ 5 %" in text
    assert "acme/lp-01 fails latency_p95 (" in text and "when loss ≥ 5 %" in text
    assert "Command response per device" in text
    assert 'alt="bar chart of the condition breakdown"' in html


def test_availability_report() -> None:
    """Two 10-min windows at 1 Hz: loss 0 % without fault; loss 10 % with a 60-s outage
    and a new session after it. Uptime 1140/1200 = 0.95, MTBF 1140 s, MTTR 60 s."""
    obs: list[Observation] = [PresenceObserved(NODE.key, "online", "s0", T - 5, T - 5)]
    session, seq = "s0", 0
    for w, loss in enumerate((0.0, 10.0)):
        lo = T + 700.0 * w
        obs.append(WindowObserved("start", "m", lo, lo, {"loss_pct": loss}))
        for k in range(600):
            ts = lo + k
            if loss and 200 <= k < 260:
                if k == 200:
                    obs.append(PresenceObserved(NODE.key, "offline", session, ts, ts))
                continue
            if loss and k == 260:
                session, seq = "s1", 0
                obs.append(PresenceObserved(NODE.key, "online", session, ts, ts))
            obs.append(ReadingObserved(NODE.key, "node", session, seq, ts, ts + 0.25, {}))
            seq += 1
        obs.append(WindowObserved("end", "m", lo + 600, lo + 600, {"loss_pct": loss}))
    ev = AvailabilityEvaluator(
        [NODE],
        {"uptime": Criterion(min=0.99), "completeness": Criterion(min=0.999)},
        options=AvailabilityOptions(),
    )
    feed(ev, obs)
    html = page("availability", ev.result())
    text = htmlmod.unescape(html)
    assert cell_value(html, "availability/acme/lp-01/uptime") == pytest.approx(1140 / 1200)
    assert cell_value(html, "availability/acme/lp-01/mtbf") == pytest.approx(1140.0)
    assert cell_value(html, "availability/acme/lp-01/mttr") == pytest.approx(60.0)
    assert cell_value(html, "availability/acme/lp-01/reconnects") == 1
    assert cell_value(html, "availability/acme/lp-01/completeness") == 1.0
    assert cell_value(html, "availability/acme/lp-01/completeness_nominal") == pytest.approx(
        1140 / 1200
    )
    assert cell_value(html, "availability/acme/lp-01/latency_p99") == pytest.approx(0.25)
    assert "online 95 % of 20 min, 1 outage (MTBF 19 min, MTTR 1 min), 1 reconnect" in text
    assert "100 % of the samples by sequence number, 95 % of the nominal rate" in text
    assert "stops meeting uptime when loss ≥ 10 %" in text
    assert "acme/lp-01 fails uptime (0.9, target ≥ 0.99) when loss ≥ 10 %" in text
    assert "Availability per device" in text
