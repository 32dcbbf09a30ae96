"""The spool drained into real servers: influxd 1.6 (v1 write API) and VictoriaMetrics (v2).

Every point gets its own timestamp: InfluxDB overwrites a point with the same series and time,
which is what makes re-sending a batch after an outage harmless, and would hide a lost or a
doubled point if timestamps repeated.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from labctl.metrics.drainer import SpoolDrainer
from labctl.metrics.influx import (
    InfluxEndpoint,
    InfluxWriter,
    PermanentWriteError,
    TransientWriteError,
)
from labctl.metrics.lineprotocol import Point, encode, encode_line, encode_prefix
from labctl.metrics.spool import OffsetStore, Spool, SpoolPosition
from tests.tsdb import InfluxServer, VictoriaMetricsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = 1_700_000_000_000_000_000  # ns; recent, so VictoriaMetrics' retention keeps it


def v1(server: InfluxServer, **kw: object) -> InfluxEndpoint:
    return InfluxEndpoint.model_validate(
        {"name": "influx", "url": server.url, "api": "v1", "database": server.database, **kw}
    )


def points(start: int, n: int, *, step_ns: int = 1_000_000, device: str = "pm-1") -> bytes:
    """``n`` lines with distinct timestamps (1 ms apart: distinct for VictoriaMetrics too)."""
    prefix = encode_prefix("air", {"device": device, "run": "r1"})
    return "".join(
        encode_line(prefix, {"pm25": i * 0.5, "seq": i}, T0 + i * step_ns)
        for i in range(start, start + n)
    ).encode()


def count(server: InfluxServer, measurement: str = "air", field: str = "seq") -> int:
    rows = server.query(f'SELECT count("{field}") FROM "{measurement}"')
    return int(rows[0]["count"]) if rows else 0


def drainer_for(
    directory: Path, endpoint: InfluxEndpoint, **kw: float | int
) -> tuple[SpoolDrainer, InfluxWriter]:
    writer = InfluxWriter(endpoint)
    drainer = SpoolDrainer(
        Spool.open_reader(directory),
        OffsetStore(directory / "offsets"),
        writer,
        endpoint.name,
        **kw,  # type: ignore[arg-type]
    )
    return drainer, writer


async def test_v1_drains_20000_points_exactly(influxd: InfluxServer, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", segment_bytes=256 * 1024)  # several segments
    for k in range(8):
        await asyncio.to_thread(spool.append, points(k * 2500, 2500))
    assert len(spool.segments()) > 3
    drainer, writer = drainer_for(spool.directory, v1(influxd, batch_bytes=128 * 1024))
    async with writer:
        assert await drainer.drain_to(spool.position(), timeout=60)
    st_ = drainer.status()
    assert st_.points_written == 20_000
    assert st_.rejected_batches == 0
    assert st_.last_error is None
    assert st_.committed == spool.position()
    assert OffsetStore(spool.directory / "offsets").load("influx") == spool.position()
    assert count(influxd) == 20_000
    # Nothing new: another drain writes nothing and moves nothing.
    async with InfluxWriter(drainer.writer.endpoint) as w2:
        again = SpoolDrainer(spool, OffsetStore(spool.directory / "offsets"), w2, "influx")
        assert await again.drain_once() == 0
    spool.close()


# -- the round trip of arbitrary strings ------------------------------------------------------

# Any character but a newline, with the ones line protocol treats specially made frequent.
_TEXT = st.one_of(
    st.sampled_from(list(' ,="\\#\t\r\x00')),
    st.characters(exclude_characters="\n", exclude_categories=["Cs"]),
)


def _ident(min_size: int = 0) -> st.SearchStrategy[str]:
    # Identifiers cannot end with a backslash (the encoder refuses: see lineprotocol).
    return st.text(_TEXT, min_size=min_size, max_size=20).filter(lambda s: not s.endswith("\\"))


_POINT = st.tuples(
    # measurement (see lineprotocol: no leading #/tab/NUL, no backslash)
    _ident(1).filter(lambda s: s[0] not in "#\t\x00" and "\\" not in s),
    _ident(),  # tag key suffix
    _ident(1),  # tag value
    _ident(),  # field key suffix
    st.text(_TEXT, max_size=40),  # string field value: anything but a newline
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@settings(
    max_examples=4,  # each example is one batch of up to 50 points in a fresh database
    deadline=None,
    # No shrinking: every shrink step is a database and a write; the assertion names the point.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(_POINT, min_size=1, max_size=50))
def test_escaping_round_trips_through_influxd(
    influxd: InfluxServer,
    batch: list[tuple[str, str, str, str, str, float, int]],
) -> None:
    db = f"prop_{uuid.uuid4().hex[:10]}"
    influxd.execute(f'CREATE DATABASE "{db}"')
    expected = []
    body = []
    for i, (meas, tkey, tval, fkey, sval, x, n) in enumerate(batch):
        # Prefixes keep tag and field keys apart from each other and from "time".
        p = Point(meas, {f"t{tkey}": tval}, {f"f{fkey}": sval, "x": x, "n": n}, T0 + i)
        body.append(encode(p))
        expected.append(p)

    async def write() -> None:
        async with InfluxWriter(v1(influxd, database=db)) as w:
            await w.write(b"".join(body))

    asyncio.run(write())
    rows = influxd.query("SELECT * FROM /.*/", database=db)
    by_key = {(r["name"], r["time"]): r for r in rows}
    assert len(rows) == len(expected)
    for p in expected:
        row = by_key[(p.measurement, p.ts_ns)]
        for k, v in p.tags.items():
            assert row[k] == v, (p, row)
        for k, fv in p.fields.items():
            got = row[k]
            if isinstance(fv, float):
                # JSON from influxd writes 1.0 as 1: compare values, not Python types.
                assert isinstance(got, int | float), (p, row)
                assert float(got) == fv, (p, row)
            else:
                assert got == fv, (p, row)
                assert type(got) is type(fv), (p, row)


# -- v2 write API into VictoriaMetrics --------------------------------------------------------


async def test_v2_drains_into_victoria_metrics(
    victoria_metrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    n = 6000
    spool = Spool(tmp_path / "spool", segment_bytes=128 * 1024)
    for k in range(3):
        await asyncio.to_thread(spool.append, points(k * n // 3, n // 3, device=f"pm-{k}"))
    endpoint = InfluxEndpoint(
        name="vm",
        url=victoria_metrics.url,
        api="v2",
        org="lab",
        bucket="labctl",
        token="not-checked-by-vm",
        batch_bytes=64 * 1024,
        gzip=True,
    )
    drainer, writer = drainer_for(spool.directory, endpoint)
    async with writer:
        assert await drainer.drain_to(spool.position(), timeout=60)
    assert drainer.status().points_written == n
    series = victoria_metrics.export('{__name__="air_seq"}')
    got = sorted(int(v) for s in series for v in s["values"])
    assert got == list(range(n))
    assert {s["metric"]["device"] for s in series} == {"pm-0", "pm-1", "pm-2"}
    spool.close()


# -- outages, refusals, misconfiguration ------------------------------------------------------


async def test_influxd_outage_loses_nothing_and_doubles_nothing(
    influxd: InfluxServer, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", segment_bytes=512 * 1024)
    drainer, writer = drainer_for(
        spool.directory,
        v1(influxd, batch_bytes=32 * 1024, timeout_s=2.0),
        poll_interval_s=0.02,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
    )
    stop = asyncio.Event()
    total = 0

    async def append(n: int) -> None:
        nonlocal total
        await asyncio.to_thread(spool.append, points(total, n))
        total += n

    async with writer, asyncio.TaskGroup() as tg:
        task = tg.create_task(drainer.run(stop))
        for _ in range(10):
            await append(1000)
        await asyncio.to_thread(influxd.stop)  # most likely mid-drain: the spool is ahead
        for _ in range(10):
            await append(1000)
            await asyncio.sleep(0.05)
        st_ = drainer.status()
        assert st_.committed is None or st_.committed < spool.position()
        assert st_.retries > 0
        assert "cannot reach" in (drainer.status().last_error or "")
        await asyncio.to_thread(influxd.start)
        for _ in range(5):
            await append(1000)
        assert await drainer.drain_to(spool.position(), timeout=60)
        stop.set()
    assert task.done()
    assert total == 25_000
    assert count(influxd) == 25_000
    st_ = drainer.status()
    assert st_.retries > 0
    assert st_.rejected_batches == 0
    assert st_.points_written >= 25_000  # a batch the server took before it stopped may repeat
    spool.close()


async def test_a_bad_line_is_rejected_and_the_drainer_moves_on(
    influxd: InfluxServer, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    bad = b"air,device=pm-1,run=r1 pm25=oops 1700000000999000000\n"  # not a number, not a bool
    conflict = b'air,device=pm-1,run=r1 seq="text" 1700000000998000000\n'  # field type conflict
    spool.append(points(0, 100))
    spool.append(bad + points(100, 100) + conflict)
    spool.append(points(200, 100))
    drainer, writer = drainer_for(spool.directory, v1(influxd))
    async with writer:
        assert await drainer.drain_to(spool.position(), timeout=30)
    assert count(influxd) == 300
    st_ = drainer.status()
    assert st_.rejected_batches == 1  # one batch (the whole spool fits in one)
    assert st_.rejected_points == 2
    assert st_.points_written == 300
    assert st_.committed == spool.position()
    assert st_.last_error is not None
    assert "refused 2 line(s)" in st_.last_error
    files = list((spool.directory / "rejected").iterdir())
    assert [f.name for f in files] == ["influx-0-0.lp"]  # named by the batch's start position
    text = files[0].read_bytes()
    body = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(b"#")]
    assert body == [bad, conflict]
    assert b"# reason: " in text
    assert b"invalid" in text or b"unable to parse" in text
    assert b"field type conflict" in text
    spool.close()


async def test_missing_database_is_a_configuration_error_not_a_rejection(
    influxd: InfluxServer, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append(points(0, 10))
    drainer, writer = drainer_for(spool.directory, v1(influxd, database="nope"))
    async with writer:
        with pytest.raises(PermanentWriteError) as info:
            await drainer.drain_once()
        assert info.value.is_configuration
        assert info.value.status == 404
        assert "database not found" in str(info.value)
        assert not await drainer.drain_to(spool.position(), timeout=0.5)
    assert drainer.status().committed in (None, SpoolPosition(0, 0))
    assert not (spool.directory / "rejected").exists()
    spool.close()


async def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    from labctl.bus.broker import free_port

    endpoint = InfluxEndpoint(
        name="x",
        url=f"http://127.0.0.1:{free_port()}",
        api="v1",
        database="d",
        username="u",
        password="s3cret",
    )
    async with InfluxWriter(endpoint) as w:
        with pytest.raises(TransientWriteError) as info:
            await w.write(b"m v=1 1\n")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(endpoint)
