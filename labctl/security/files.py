"""Atomic, permission-aware file writes for secrets and broker configuration."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes | str, mode: int = PUBLIC_MODE) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, created with ``mode``.

    The temporary file is created with ``mode`` from the start, so a private key is never
    readable by others, not even for an instant; the rename means a broker reloading on
    SIGHUP sees the old file or the new one, never half of one.
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask; be exact
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
