"""How the CLI finds a running controller for a data directory.

``labctl serve`` writes ``serve.json`` (mode 0600) with its pid, HTTP address and an API token.
Only someone who can read the data directory can drive the controller; the token never
appears in logs or on the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServeInfo:
    """Where a running controller listens."""

    pid: int
    url: str
    token: str
    controller: str

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for the controller's API."""
        return httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {self.token}"}
        )


def info_path(data_dir: Path) -> Path:
    """``serve.json`` of a data directory."""
    return data_dir / "serve.json"


def new_token() -> str:
    """A fresh API token."""
    return secrets.token_urlsafe(32)


def write_info(data_dir: Path, info: ServeInfo) -> None:
    """Write ``serve.json`` atomically, readable by its owner only."""
    path = info_path(data_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info.__dict__, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_info(data_dir: Path, pid: int) -> None:
    """Remove ``serve.json`` if it is ours."""
    found = read_info(data_dir, check_alive=False)
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            info_path(data_dir).unlink()


def read_info(data_dir: Path, check_alive: bool = True) -> ServeInfo | None:
    """The running controller of ``data_dir``, or None (a stale file is ignored)."""
    try:
        data = json.loads(info_path(data_dir).read_text())
        info = ServeInfo(
            int(data["pid"]), str(data["url"]), str(data["token"]), str(data["controller"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return info
