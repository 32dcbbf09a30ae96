"""``labctl eval detections``: figures equal to pycocotools, exit codes, errors in words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from labctl.cli.main import cli
from tests.cocogen import Shape, make_dataset, make_scenes, reference


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["eval", "detections", *map(str, args)])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, dict[str, Any], list[dict[str, Any]]]:
    gt, dets = make_dataset(21, Shape(images=40, crowd=0.1))
    return _write(tmp_path, "gt.json", gt), _write(tmp_path, "dev.json", dets), gt, dets


def test_json_equals_pycocotools(files: tuple[Path, Path, Any, Any]) -> None:
    gt_path, dt_path, gt, dets = files
    r = _run("--gt", gt_path, "--dt", dt_path, "--json", "--bootstrap", "20")
    assert r.exit_code in (0, 1), r.output
    out = json.loads(r.stdout)
    ref = reference(gt, dets)
    (s,) = out["subjects"]
    m = {x["name"]: x["value"] for x in s["metrics"]}
    names = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100")
    for i, name in enumerate(names):
        expected = None if ref.stats[i] == -1 else ref.stats[i]
        assert m[name] == pytest.approx(expected, abs=1e-6), name
    assert "latency_p95" not in m and "missed_deadlines" not in m  # nothing timed offline
    assert s["subject"] == "dev"
    assert [c["metric"] for c in s["criteria"]] == ["ap50"]  # the default criterion
    assert r.exit_code == (0 if ref.stats[1] >= 0.5 else 1)
    assert any("categories not in the ground truth" in n for n in out["notes"])


def test_exit_code_follows_the_criteria(tmp_path: Path) -> None:
    gt, dets = make_scenes(1, images=60)
    g, d = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dev.json", dets)
    easy = _write(tmp_path, "easy.yaml", "ap50: {min: 0.3}\nrecall: {min: 0.5}\n")
    hard = _write(tmp_path, "hard.yaml", "criteria:\n  ap50: {min: 0.99}\n")
    assert _run("--gt", g, "--dt", d, "--criteria", easy).exit_code == 0
    r = _run("--gt", g, "--dt", d, "--criteria", hard)
    assert r.exit_code == 1
    assert "FAIL" in r.output and "ap50" in r.output


def test_table_breakdown_and_limitation(tmp_path: Path) -> None:
    gt, dets = make_scenes(2, images=200)
    g, d = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dev.json", dets)
    crit = _write(tmp_path, "c.yaml", "recall: {min: 0.8}\n")
    r = _run("--gt", g, "--dt", d, "--criteria", crit, "--condition", "blur", "--bootstrap", "10")
    assert r.exit_code in (0, 1), r.output
    for text in ("AP@[.5:.95]", "AP50", "AR@100", "identification accuracy", "95 % CI"):
        assert text in r.output
    assert "blur σ ≥ 3 px" in r.output
    assert "dev: recall drops below 0.8" in " ".join(r.output.split())


def _error(r: Result) -> str:
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    assert "Traceback" not in r.output
    return " ".join(r.output.split())


def test_bad_files_are_named(files: tuple[Path, Path, Any, Any], tmp_path: Path) -> None:
    gt_path, dt_path, gt, dets = files
    missing = tmp_path / "nope.json"
    assert f"{missing}: no such file" in _error(_run("--gt", gt_path, "--dt", missing))
    assert f"{missing}: no such file" in _error(_run("--gt", missing, "--dt", dt_path))

    broken = _write(tmp_path, "broken.json", '[{"image_id": 1,')
    assert f"{broken}:1: not JSON" in _error(_run("--gt", gt_path, "--dt", broken))

    shape = _write(tmp_path, "shape.json", {"results": dets})
    assert "expected a COCO results list" in _error(_run("--gt", gt_path, "--dt", shape))

    stray = [*dets[:3], dict(dets[0], image_id=123_456_789)]
    p = _write(tmp_path, "stray.json", stray)
    msg = _error(_run("--gt", gt_path, "--dt", p))
    assert f"{p}: entry 3: image_id 123456789 is not an image of {gt_path}" in msg

    image = dets[0]["image_id"]
    extra = f'{{"image_id": {image}, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}}'
    nan = _write(tmp_path, "nan.json", json.dumps(dets[:2])[:-1] + ", " + extra + "]")
    msg = _error(_run("--gt", gt_path, "--dt", nan))
    assert f"{nan}: entry 2 (image_id {dets[0]['image_id']}).score: NaN" in msg

    box = _write(tmp_path, "box.json", [dict(dets[0], bbox=[1, 2, 3])])
    assert f"{box}: entry 0 (image_id" in _error(_run("--gt", gt_path, "--dt", box))

    bad_gt = dict(gt, annotations=[*gt["annotations"], dict(gt["annotations"][0], id="x")])
    p = _write(tmp_path, "badgt.json", bad_gt)
    n = len(gt["annotations"])
    assert f"{p}: annotations[{n}] (image_id" in _error(_run("--gt", p, "--dt", dt_path))
    assert ".id: Input should be a valid integer" in _error(_run("--gt", p, "--dt", dt_path))


def test_bad_options_are_explained(files: tuple[Path, Path, Any, Any], tmp_path: Path) -> None:
    gt_path, dt_path, _, _ = files
    msg = _error(_run("--gt", gt_path, "--dt", dt_path, "--condition", "fog"))
    assert "condition 'fog' is not a condition of any image" in msg
    lat = _write(tmp_path, "lat.yaml", "latency_p95: {max: 0.5}\n")
    msg = _error(_run("--gt", gt_path, "--dt", dt_path, "--criteria", lat))
    assert "latency_p95 cannot be judged offline" in msg
    unknown = _write(tmp_path, "u.yaml", "mAP: {min: 0.5}\n")
    assert "no metric called 'mAP'" in _error(
        _run("--gt", gt_path, "--dt", dt_path, "--criteria", unknown)
    )
