"""Configuration: file + environment, embedded defaults, errors in words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABCTL_CONFIG", raising=False)
    monkeypatch.setenv("LABCTL_DATA_DIR", str(tmp_path / "d"))
    s = load_settings()
    assert s.broker.mode == "embedded"
    assert s.rig.simulated and s.metrics.influx == []
    assert s.store_path == tmp_path / "d" / "runs.sqlite3"


def test_the_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load((REPO / "labctl.example.yaml").read_text())
    data["dashboard"]["users"] = []  # the example's users hold placeholders, not secrets
    path = tmp_path / "labctl.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("LABCTL_CONFIG", str(path))
    monkeypatch.setenv("LABCTL_BROKER__PORT", "1999")  # environment beats the file
    s = load_settings()
    assert s.broker.port == 1999
    assert [e.name for e in s.metrics.influx] == ["influx1", "influx2"]
    assert s.rig.roles["lab/ref-t640"] == "reference"


def test_errors_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "labctl.yaml"
    bad.write_text("broker: {mode: cloud}\nrig: {sim: {speed: -1}}\n")
    monkeypatch.setenv("LABCTL_CONFIG", str(bad))
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "broker.mode" in text and "rig.sim.speed" in text
    monkeypatch.setenv("LABCTL_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()
