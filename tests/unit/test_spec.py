"""Spec errors name the file, the line and the field, in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.trial.spec import SpecError, load_spec

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
trial: pm25-collocation
title: t
kind: sensor-accuracy
devices:
  reference: {role: reference, channel: pm25}
  candidates: {role: dut, channel: pm25, min: 1}
duration: 30d
averaging: 24h
criteria:
  slope: {between: [0.65, 1.35]}
  r2: {min: 0.70}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_shipped_spec_is_valid() -> None:
    loaded = load_spec(REPO / "trials" / "pm25-collocation.yaml", {"sensor-accuracy"})
    assert loaded.spec.duration == 30 * 86400
    assert loaded.spec.averaging == 86400
    assert loaded.spec.criteria["r2"].holds(0.7)
    assert not loaded.spec.criteria["r2"].holds(0.69)


@pytest.mark.parametrize(
    ("broken", "line", "words"),
    [
        (
            GOOD.replace("averaging: 24h", "averaging: 24 hours"),
            8,
            "averaging: '24 hours' is not a duration",
        ),
        (GOOD.replace("r2: {min: 0.70}", "r2: {mn: 0.70}"), 11, "criteria.r2.mn: unknown field"),
        (
            GOOD.replace("  slope: {between: [0.65, 1.35]}", "  slope: {between: [1.35, 0.65]}"),
            10,
            "'between' must be [low, high]",
        ),
        (GOOD.replace("  r2: {min: 0.70}", "  r2: {min: 0.7, max: 1}"), 11, "exactly one of"),
        (GOOD.replace("title: t\n", ""), 1, "title: required field is missing"),
        (GOOD.replace("min: 1}", "min: -1}"), 6, "devices.candidates.min"),
        (GOOD.replace("trial: pm25-collocation", "trial: PM25 Collocation"), 1, "trial:"),
        (GOOD.replace("duration: 30d", "duration: -5"), 7, "duration: a duration must be positive"),
        (GOOD + "  rmse: [7]\n", 12, "criteria.rmse"),
    ],
)
def test_broken_specs_name_file_line_and_field(
    tmp_path: Path, broken: str, line: int, words: str
) -> None:
    path = write(tmp_path, broken)
    with pytest.raises(SpecError) as info:
        load_spec(path, {"sensor-accuracy"})
    text = str(info.value)
    assert f"{path}:{line}:" in text, text
    assert words in text, text


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("devices:\n", "devices: [\n"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"{path}:" in str(info.value) and "not valid YAML" in str(info.value)


def test_unknown_kind_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("kind: sensor-accuracy", "kind: vibes"))
    with pytest.raises(SpecError) as info:
        load_spec(path, {"sensor-accuracy"})
    assert f"{path}:3: kind: no evaluator called 'vibes'" in str(info.value)


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("title: t", "title: !!python/object/apply:os.system ['true']")
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "not valid YAML" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)
