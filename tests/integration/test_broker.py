import socket

from labctl.bus.broker import PrivateBroker


def test_private_broker_listens_and_stops(broker: PrivateBroker) -> None:
    with socket.create_connection((broker.host, broker.port), 1):
        pass
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert broker.pid is None


def test_broker_saves_its_sessions_on_stop(broker: PrivateBroker) -> None:
    # Without this, a broker restart forgets queued QoS 1 messages (e.g. root → mosquitto user).
    broker.stop()
    assert (broker.directory / "mosquitto.db").stat().st_size > 0
    assert "Permission denied" not in (broker.directory / "mosquitto.log").read_text()
