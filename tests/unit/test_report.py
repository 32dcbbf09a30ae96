"""Report building without a rig: escaping, the re-score link, the comparison matrix, and
reading one run's range back from a spool shared with another run."""

from __future__ import annotations

from pathlib import Path

from labctl.evaluators.result import CriterionOutcome, EvaluationResult, Metric, SubjectResult
from labctl.metrics.lineprotocol import encode_line, encode_prefix
from labctl.metrics.replay import samples
from labctl.metrics.spool import Spool, SpoolPosition
from labctl.report.build import build_report
from labctl.report.compare import matrix
from labctl.report.html import render_html
from labctl.report.inputs import ReportInputs
from labctl.report.sections import section_registry
from labctl.store.records import DeviceInRun, RunRecord, SpecRef

EVIL = '<script>alert("x")</script>'


def subject(key: str, rmse: float, model: str = "M-1") -> SubjectResult:
    vendor, device = key.split("/")
    return SubjectResult(
        subject=key,
        vendor=vendor,
        device=device,
        model=model,
        metrics=[Metric(name="rmse", value=rmse, unit="µg/m³"), Metric(name="n", value=30.0)],
        criteria=[CriterionOutcome(metric="rmse", value=rmse, target="≤ 7", passed=rmse <= 7)],
        passed=rmse <= 7,
    )


def record(run_id: str = "r1", rescored_from: str | None = None) -> RunRecord:
    return RunRecord(
        id=run_id,
        trial="t",
        title="A trial",
        kind="sensor-accuracy",
        rig="sim",
        spec=SpecRef(path="/nowhere/spec.yaml", sha256="0" * 64),
        status="failed",
        exit_code=1,
        started_at=1.78e9,
        ended_at=1.78e9 + 10,
        devices=[
            DeviceInRun(
                key="v/a",
                vendor="v",
                device="a",
                role="dut",
                model=EVIL,
                serial="S1",
                hw_version="1",
                sw_version="fw&1",
                manifest_version=1,
                session="s",
            )
        ],
        evaluation=EvaluationResult(
            evaluator="sensor-accuracy",
            subjects=[subject("v/a", 3.0, model=EVIL), subject("w/b", 9.0)],
        ),
        labctl_version="0",
        data_dir="/nowhere",
        rescored_from=rescored_from,
    )


def test_vendor_strings_are_escaped_and_the_rescore_is_linked() -> None:
    html = render_html(build_report(ReportInputs(record("r2", "r1")), section_registry()))
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "fw&amp;1" in html
    assert "a re-score of run r1" in html
    assert "<script" not in html


def test_matrix_marks_the_best_per_criterion() -> None:
    m = matrix([record("r1"), record("r2")])
    assert m.rows[0].label(m.several_runs) == "r1 · v/a"
    assert [r.cells["rmse"].best for r in m.rows] == [True, False, True, False]


def test_replay_reads_only_its_run_and_range(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)  # small segments: the range spans several

    def line(run: str, i: int) -> str:
        prefix = encode_prefix("telemetry", {"run": run, "vendor": "v", "device": "a"})
        return encode_line(prefix, {"pm25": float(i), "seq": i, "session": "s"}, i * 10**9)

    spool.append("".join(line("old", i) for i in range(50)).encode())
    start = spool.position()
    for i in range(300):  # two runs interleaved on one spool
        spool.append((line("mine", i) + line("other", i)).encode())
    end = spool.position()
    spool.append("".join(line("mine", 1000 + i) for i in range(10)).encode())
    spool.close()
    got = list(samples(tmp_path, start, end, "mine"))
    assert [s.seq for s in got] == list(range(300))
    assert got[7].values == {"pm25": 7.0} and got[7].ts == 7.0 and got[7].device == "v/a"
    assert start.segment < end.segment
    assert list(samples(tmp_path, SpoolPosition(0, 0), start, "mine")) == []
