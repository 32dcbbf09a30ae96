import socket

from labctl.bus.broker import PrivateBroker


def test_private_broker_listens_and_stops(broker: PrivateBroker) -> None:
    with socket.create_connection((broker.host, broker.port), 1):
        pass
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert broker.pid is None
