"""Shared fixtures: real services started on private ports, stopped by pid at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.bus.broker import BrokerError, PrivateBroker

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DATA = REPO.parent / "shared" / "reference-data"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A real Mosquitto on a private loopback port with its own config and persistence."""
    b = PrivateBroker(tmp_path / "broker")
    try:
        b.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start mosquitto for the test: {exc} (scripts/test installs it)")
    yield b
    b.stop()


from tests.tsdb import influxd, victoria_metrics  # noqa: E402, F401
