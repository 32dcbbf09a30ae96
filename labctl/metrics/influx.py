"""InfluxDB sinks: endpoints and an HTTP line-protocol writer (``labctl.metrics.drainer`` feeds
it the spool).

The drainer reads a batch of whole lines from the spool at its committed position, POSTs it,
and commits the position after the batch only once the server accepted it. An outage leaves
the batch in the spool to be sent again (InfluxDB overwrites a point with the same series and
timestamp, so a batch sent twice is stored once). A batch the server refuses for its content
is narrowed down to the refused lines, which go to ``rejected/`` with the server's reason;
the drainer moves on, so one bad line cannot wedge a sink and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

log = logging.getLogger(__name__)

MiB = 1024 * 1024

# Statuses that mean "the server or the path to it is unwell", not "your data is wrong".
_TRANSIENT_STATUS = frozenset({408, 425, 429})
# Statuses that refuse every write until someone fixes the configuration (credentials,
# database or bucket name). Rejecting the data for these would empty the spool into rejected/.
_CONFIG_STATUS = frozenset({401, 403, 404})


class InfluxEndpoint(BaseModel):
    """Where and how to write: an InfluxDB (or compatible) server's v1 or v2 write API.

    v1 (``/write``: InfluxDB 1.x, 3.x): ``database``, optional ``retention_policy``,
    ``username``/``password`` (sent as HTTP basic auth). v2 (``/api/v2/write``: InfluxDB 2.x,
    3.x, Cloud, 1.8+, VictoriaMetrics): ``org``, ``bucket``, ``token``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    api: Literal["v1", "v2"] = "v1"
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    retention_policy: str | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    batch_bytes: int = Field(default=MiB, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = False

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://host:8086, got {safe_url(url)!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "put credentials in username/password (v1) or token (v2), not in the url"
            )
        return url.rstrip("/")

    @model_validator(mode="after")
    def _api_fields(self) -> InfluxEndpoint:
        if self.api == "v1":
            if not self.database:
                raise ValueError(f"endpoint {self.name!r}: api v1 needs 'database'")
            if (self.username is None) != (self.password is None):
                raise ValueError(
                    f"endpoint {self.name!r}: give both username and password, or neither"
                )
        else:
            missing = [k for k in ("org", "bucket") if not getattr(self, k)]
            if missing:
                raise ValueError(f"endpoint {self.name!r}: api v2 needs {' and '.join(missing)}")
        return self

    @property
    def write_url(self) -> str:
        """The write endpoint's URL, without its query."""
        return f"{self.url}/write" if self.api == "v1" else f"{self.url}/api/v2/write"

    def write_params(self) -> dict[str, str]:
        """Query parameters of a write (never credentials)."""
        if self.api == "v1":
            assert self.database is not None
            params = {"db": self.database, "precision": "ns"}
            if self.retention_policy:
                params["rp"] = self.retention_policy
            return params
        assert self.org is not None
        assert self.bucket is not None
        return {"org": self.org, "bucket": self.bucket, "precision": "ns"}

    def describe(self) -> str:
        """``name (url)`` for messages: no credentials."""
        return f"{self.name} ({safe_url(self.url)})"


def safe_url(url: str) -> str:
    """``url`` without user info or query, safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"


class WriteError(RuntimeError):
    """A write the server did not accept."""


class TransientWriteError(WriteError):
    """Worth retrying later: server down, unreachable, timed out, overloaded (5xx, 429)."""


class PermanentWriteError(WriteError):
    """The server refused the batch (4xx); sending it again gets the same answer."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def is_configuration(self) -> bool:
        """True when every write would fail (credentials, database or bucket): not the data."""
        return self.status in _CONFIG_STATUS


class InfluxWriter:
    """POSTs line-protocol bodies to one endpoint with a shared ``httpx.AsyncClient``."""

    def __init__(
        self, endpoint: InfluxEndpoint, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.endpoint = endpoint
        self._own_client = client is None
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if endpoint.api == "v2" and endpoint.token is not None:
            headers["Authorization"] = f"Token {endpoint.token.get_secret_value()}"
        auth: httpx.BasicAuth | None = None
        if endpoint.api == "v1" and endpoint.username is not None:
            assert endpoint.password is not None
            auth = httpx.BasicAuth(endpoint.username, endpoint.password.get_secret_value())
        self._headers = headers
        self._auth = auth
        self._client = client or httpx.AsyncClient(timeout=endpoint.timeout_s)

    async def write(self, body: bytes) -> None:
        """Send ``body`` (whole lines). Returns when the server answered 2xx.

        Raises :class:`TransientWriteError` (retry later) or :class:`PermanentWriteError`
        (the server's reason included).
        """
        if not body:
            return
        headers = dict(self._headers)
        content = body
        if self.endpoint.gzip:
            content = await asyncio.to_thread(gzip.compress, body, 1)
            headers["Content-Encoding"] = "gzip"
        where = self.endpoint.describe()
        try:
            resp = await self._client.post(
                self.endpoint.write_url,
                params=self.endpoint.write_params(),
                content=content,
                headers=headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=self.endpoint.timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise TransientWriteError(
                f"{where} did not answer within {self.endpoint.timeout_s} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientWriteError(
                f"cannot reach {where}: {type(exc).__name__}: {exc or 'connection failed'}"
            ) from None
        status = resp.status_code
        if 200 <= status < 300:
            return
        reason = _server_reason(resp)
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise TransientWriteError(f"{where} answered {status}: {reason}")
        if status in _CONFIG_STATUS:
            raise PermanentWriteError(
                f"{where} refused the write with {status} ({reason}); check the endpoint's "
                "credentials and database/bucket - the spool keeps the points meanwhile",
                status=status,
                reason=reason,
            )
        raise PermanentWriteError(
            f"{where} refused the batch with {status}: {reason}", status=status, reason=reason
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this writer made it."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> InfluxWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _server_reason(resp: httpx.Response) -> str:
    """The server's own words: ``error`` (1.x), ``message`` (2.x) or the plain body."""
    text = resp.text.strip()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    header: str | None = resp.headers.get("X-Influxdb-Error")
    if header:
        return header
    return text[:2000] or resp.reason_phrase or f"HTTP {resp.status_code}"


__all__ = [
    "InfluxEndpoint",
    "InfluxWriter",
    "PermanentWriteError",
    "TransientWriteError",
    "WriteError",
    "safe_url",
]
