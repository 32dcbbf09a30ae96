"""Reports, re-scoring and comparison from a real run on the simulated rig.

One run of the shipped PM2.5 trial (embedded broker, no TSDB configured: the spool is the only
store of the raw data) is shared by every test of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from labctl.report.numbers import num

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "trials" / "pm25-collocation.yaml"

pytestmark = pytest.mark.e2e


@dataclass
class Shared:
    root: Path
    record: dict[str, Any]
    run_stderr: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
        env["LABCTL_CONFIG"] = str(self.root / "labctl.yaml")
        env.update(extra)
        return env

    def labctl(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labctl.cli.main", *args],
            cwd=REPO,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def spec(self, name: str, **criteria: dict[str, Any]) -> Path:
        data = yaml.safe_load(SPEC.read_text())
        data["criteria"].update(criteria)
        path = self.root / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    root = tmp_path_factory.mktemp("reports")
    config = {
        "data_dir": str(root / "data"),
        "controller": "ctl-report-test",
        "broker": {"mode": "embedded"},
        "metrics": {"influx": []},
        "report": {"after_run": True, "format": "html"},
    }
    (root / "labctl.yaml").write_text(yaml.safe_dump(config))
    s = Shared(root, {}, "")
    proc = s.labctl("run", str(SPEC), "--json", "--quiet")
    assert proc.returncode in (0, 1), proc.stderr
    s.record = json.loads(proc.stdout)
    s.run_stderr = proc.stderr
    return s


class Cells(HTMLParser):
    """Table cells with a data-key, the verdict badge, and every src/href in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[str | None, str]] = {}
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._key: str | None = None
        self._value: str | None = None
        self._text: list[str] = []
        self.badge = ""
        self._in_badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "href"):
            if a.get(name):
                self.links.append(str(a[name]))
        if tag == "td" and a.get("data-key"):
            self._key, self._value, self._text = a["data-key"], a.get("data-value"), []
        if a.get("id") == "verdict":
            self._in_badge = True

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self._text.append(data)
        if self._in_badge:
            self.badge += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._key is not None:
            self.cells[self._key] = (self._value, "".join(self._text).strip())
            self._key = None
        if tag == "div":
            self._in_badge = False


def parse(path: Path) -> tuple[Cells, str]:
    text = path.read_text(encoding="utf-8")
    p = Cells()
    p.feed(text)
    return p, text


def report_path(shared: Shared, run_id: str, fmt: str = "html") -> Path:
    return shared.root / "data" / "runs" / run_id / f"report.{fmt}"


def test_run_writes_its_report_and_says_where(shared: Shared) -> None:
    path = report_path(shared, shared.record["id"])
    assert path.is_file()
    assert f"report {path}" in shared.run_stderr


def test_html_numbers_equal_the_run_record(shared: Shared) -> None:
    rec = shared.record
    cells, text = parse(report_path(shared, rec["id"]))
    assert cells.badge.strip() == ("PASS" if rec["status"] == "passed" else "FAIL")
    checked = 0
    for s in rec["evaluation"]["subjects"]:
        metrics = {m["name"]: m for m in s["metrics"]}
        for c in s["criteria"]:
            value, shown = cells.cells[f"criterion/{s['subject']}/{c['metric']}"]
            assert value is not None and float(value) == c["value"]
            assert shown == num(c["value"])
            ci = metrics[c["metric"]]["ci95"]
            if ci is not None:
                _, shown_ci = cells.cells[f"ci95/{s['subject']}/{c['metric']}"]
                assert shown_ci == f"{num(ci[0])} to {num(ci[1])}"
            value, shown = cells.cells[f"matrix/{rec['id']}/{s['subject']}/{c['metric']}"]
            assert value is not None and float(value) == c["value"]
            assert shown.removesuffix(" ★") == num(c["value"])
            checked += 1
        for i, b in enumerate(s["breakdown"]):
            for name, v in b["metrics"].items():
                value, shown = cells.cells[f"bin/{s['subject']}/{i}/{name}"]
                assert (value is None) == (v is None)
                if v is not None:
                    assert float(value or "nan") == v and shown == num(v)
            assert float(cells.cells[f"bin/{s['subject']}/{i}/n"][0] or -1) == b["n"]
        for lim in s["limitations"]:
            assert lim["text"] in text.replace("&lt;", "<").replace("&gt;", ">")
    for g in rec["evaluation"]["groups"]:
        for m in g["metrics"]:
            value, _ = cells.cells[f"precision/{g['group']}/{m['name']}"]
            assert float(value or "nan") == m["value"]
    assert checked == sum(len(s["criteria"]) for s in rec["evaluation"]["subjects"]) > 0
    # devices under test with their identity and firmware; provenance names the raw data
    for d in rec["devices"]:
        for field in ("model", "serial", "sw_version"):
            assert f">{d[field]}<" in text
    for name, digest in rec["spool"]["segments"].items():
        assert name in text and digest in text
    assert rec["spec"]["sha256"] in text
    assert f"run = {rec['id']}" in text
    assert "re-evaluating the spooled data gives the recorded figures exactly" in text
    # self-contained: no scripts, nothing fetched
    assert "script" not in cells.tags
    assert all(x.startswith(("data:image/png;base64,", "#")) for x in cells.links), cells.links
    assert len([x for x in cells.links if x.startswith("data:")]) >= 3  # scatter, series, bins


def test_pdf_has_pages_and_is_not_blank(shared: Shared, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm is missing (Debian poppler-utils; scripts/test installs it)")
    out = tmp_path / "r.pdf"
    proc = shared.labctl("report", shared.record["id"], "--format", "pdf", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(out), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 4
    ink = []
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"), dtype=np.float64)
        assert pixels.std() > 3, f"{page.name} looks blank"
        assert (pixels < 128).sum() > 50, f"{page.name} has no text"
        ink.append(float((pixels < 128).mean()))
    assert ink[0] > 0.01, "the first page (summary) should be full of text"


def test_pdf_without_chromium_says_what_to_install(shared: Shared, tmp_path: Path) -> None:
    proc = shared.labctl(
        "report",
        shared.record["id"],
        "--format",
        "pdf",
        "--out",
        str(tmp_path / "x.pdf"),
        LABCTL_REPORT__CHROMIUM=str(tmp_path / "no-chromium"),
    )
    assert proc.returncode == 2
    assert "apt-get install chromium" in proc.stderr
    assert "HTML reports work without it" in proc.stderr
    assert not (tmp_path / "x.pdf").exists()


def test_rescore_with_the_same_spec_gives_the_same_verdict(shared: Shared) -> None:
    rec = shared.record
    proc = shared.labctl("rescore", rec["id"], "--spec", str(SPEC), "--json", "--no-report")
    assert proc.returncode == rec["exit_code"], proc.stderr
    new = json.loads(proc.stdout)
    assert new["id"] != rec["id"] and new["rescored_from"] == rec["id"]
    assert new["status"] == rec["status"]
    # no TSDB was configured: the figures can only have come from the spool, and they are
    # the very figures of the original run
    assert rec["sinks"] == []
    assert new["evaluation"] == rec["evaluation"]
    assert new["counters"]["readings_evaluated"] == rec["counters"]["readings_evaluated"]


def test_rescore_against_a_tightened_criterion_fails(shared: Shared) -> None:
    rec = shared.record
    tight = shared.spec("tight.yaml", rmse={"max": 3.0})
    proc = shared.labctl("rescore", rec["id"], "--spec", str(tight), "--json", "--no-report")
    assert proc.returncode == 1, proc.stderr
    new = json.loads(proc.stdout)
    assert new["status"] == "failed" and new["rescored_from"] == rec["id"]
    subjects = {s["subject"]: s for s in new["evaluation"]["subjects"]}
    [rmse] = [c for c in subjects["nimbus/nb2-0001"]["criteria"] if c["metric"] == "rmse"]
    assert not rmse["passed"] and rmse["target"] == "≤ 3"
    # the original record is untouched; the new one is listed
    shown = json.loads(shared.labctl("runs", "show", rec["id"], "--json").stdout)
    assert shown == rec
    listed = json.loads(shared.labctl("runs", "list", "--json").stdout)
    assert new["id"] in {r["id"] for r in listed}
    # compare the original and the re-score: one matrix, best per criterion marked
    out = shared.root / "c.html"
    cmp = shared.labctl("compare", rec["id"], new["id"], "--json", "--out", str(out))
    assert cmp.returncode == 0, cmp.stderr
    m = json.loads(cmp.stdout)
    assert len(m["rows"]) == 6 and m["criteria"]["rmse"] == ["≤ 7", "≤ 3"]
    best_rmse = {r["subject"] for r in m["rows"] if r["cells"]["rmse"]["best"]}
    lowest = min(r["cells"]["rmse"]["value"] for r in m["rows"])
    assert all(
        (r["cells"]["rmse"]["value"] == lowest) == r["cells"]["rmse"]["best"] for r in m["rows"]
    )
    assert len(best_rmse) == 1
    cells, _ = parse(out)
    assert cells.cells[f"matrix/{new['id']}/nimbus/nb2-0001/rmse"][1] == num(rmse["value"])


def test_rescore_reads_the_spool(shared: Shared) -> None:
    spool = Path(shared.record["spool"]["directory"])
    hidden = spool.with_name("spool-hidden")
    spool.rename(hidden)
    try:
        proc = shared.labctl("rescore", shared.record["id"], "--spec", str(SPEC), "--no-report")
    finally:
        hidden.rename(spool)
    assert proc.returncode == 2
    assert "spool" in proc.stderr and str(spool) in proc.stderr.replace("\n", "")


def test_compare_refuses_runs_of_different_trials(shared: Shared) -> None:
    proc = shared.labctl("compare", shared.record["id"], "no-such-run")
    assert proc.returncode == 2 and "no run" in proc.stderr
