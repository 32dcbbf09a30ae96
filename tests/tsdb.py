"""Real time-series databases for tests: Debian's ``influxd`` 1.6 and ``victoria-metrics``.

Each fixture starts its server on private loopback ports with its data in ``tmp_path``, waits
until it answers, and stops it by pid at the end, also when the test fails. Both servers can be
stopped and started again on the same port and data directory, which is how outage tests work.
A missing binary fails the test (never skips): ``scripts/test`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from labctl.bus.broker import free_port
from labctl.procs import terminate

INFLUXD = "/usr/bin/influxd"
VICTORIA_METRICS = "/usr/bin/victoria-metrics"


class ServerError(RuntimeError):
    """A test server would not start."""


class _Child:
    """A server child process with a log file, stopped by pid."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log_path = directory / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def spawn(self, argv: list[str]) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def wait_ready(self, url: str, ok: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerError(f"{self.name} exited at start (code {code}):\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=0.5).status_code == ok:
                    return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer {url} within {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by pid, SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        terminate(proc, timeout)


def _need(binary: str, package: str) -> str:
    if Path(binary).is_file() and os.access(binary, os.X_OK):
        return binary
    found = shutil.which(Path(binary).name)
    if found is None:
        pytest.fail(f"{Path(binary).name} not found: scripts/test installs Debian's {package}")
    return found


class InfluxServer:
    """A private ``influxd`` 1.6: HTTP API at :attr:`url`, database :attr:`database`."""

    def __init__(self, directory: Path, binary: str, database: str = "labctl") -> None:
        self.directory = directory
        self.binary = binary
        self.database = database
        self.port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._child = _Child("influxd", directory)
        self.config_path = directory / "influxdb.conf"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._child.pid

    def render_config(self) -> str:
        """influxdb.conf: data in the tmp directory, loopback only, quiet."""
        d = self.directory
        return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  write-tracing = false

[logging]
  level = "error"
  suppress-logo = true

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
"""

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) on the same ports and data directory; return once /ping is 204."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        self._child.spawn([self.binary, "-config", str(self.config_path)])
        self._child.wait_ready(f"{self.url}/ping", 204, timeout)

    def stop(self) -> None:
        """Stop the server by pid (the data directory stays)."""
        self._child.stop()

    def execute(self, statement: str) -> dict[str, Any]:
        """Run an InfluxQL statement with POST (CREATE, DROP, …); return the decoded answer."""
        r = httpx.post(f"{self.url}/query", params={"q": statement}, timeout=30)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def query(self, influxql: str, database: str | None = None) -> list[dict[str, Any]]:
        """Rows of a SELECT/SHOW: one dict per row, with ``name`` (the measurement) and the
        series' tags merged in. Raises on an InfluxQL error."""
        r = httpx.get(
            f"{self.url}/query",
            params={"db": database or self.database, "q": influxql, "epoch": "ns"},
            timeout=60,
        )
        r.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in r.json()["results"]:
            if "error" in result:
                raise AssertionError(f"InfluxQL error for {influxql!r}: {result['error']}")
            for series in result.get("series", []):
                extra = {"name": series.get("name"), **series.get("tags", {})}
                for values in series.get("values", []):
                    rows.append({**extra, **dict(zip(series["columns"], values, strict=True))})
        return rows


class VictoriaMetricsServer:
    """A private single-node ``victoria-metrics`` (1.79) at :attr:`url`.

    What to know when testing against it:

    * line protocol ``meas,tag=v field=1`` becomes the series ``meas_field{tag="v"}``;
      string fields are not ignored in 1.79 but stored as 0, and so is a malformed value;
    * a line it cannot parse is skipped with only a log line of its own: the write still
      answers 204;
    * timestamps are stored in milliseconds: give distinct points distinct milliseconds, or
      sub-millisecond points collapse onto one timestamp (and are deduplicated when
      ``-dedup.minScrapeInterval`` is set);
    * samples outside ``-retentionPeriod`` are dropped (it is 100 years here);
    * writes are buffered: :meth:`flush` (``/internal/force_flush``) before reading, and the
      fixture runs with ``-search.disableCache`` so reads are fresh.
    """

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._child = _Child("victoria-metrics", directory)

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._child.pid

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) on the same port and data directory; return once /health is OK."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._child.spawn(
            [
                self.binary,
                f"-storageDataPath={self.directory / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ]
        )
        self._child.wait_ready(f"{self.url}/health", 200, timeout)

    def stop(self) -> None:
        """Stop the server by pid (the data directory stays)."""
        self._child.stop()

    def flush(self) -> None:
        """Make buffered samples searchable."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=30).raise_for_status()

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Series matching ``match`` as ``/api/v1/export`` gives them: one dict per series with
        ``metric``, ``values`` and ``timestamps`` (ms). Flushes first."""
        self.flush()
        r = httpx.get(
            f"{self.url}/api/v1/export",
            params={"match[]": match, "start": "0"},
            timeout=60,
        )
        r.raise_for_status()
        return [orjson.loads(line) for line in r.content.splitlines() if line.strip()]


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxServer]:
    """A real ``influxd`` 1.6 on private loopback ports with database ``labctl`` created."""
    binary = _need(INFLUXD, "influxdb")
    server = InfluxServer(tmp_path / "influxd", binary)
    try:
        try:
            server.start()
            server.execute(f'CREATE DATABASE "{server.database}"')
        except ServerError as exc:
            pytest.fail(f"cannot start influxd for the test: {exc}")
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    """A real single-node VictoriaMetrics on a private loopback port."""
    binary = _need(VICTORIA_METRICS, "victoria-metrics")
    server = VictoriaMetricsServer(tmp_path / "victoria-metrics", binary)
    try:
        try:
            server.start()
        except ServerError as exc:
            pytest.fail(f"cannot start victoria-metrics for the test: {exc}")
        yield server
    finally:
        server.stop()
