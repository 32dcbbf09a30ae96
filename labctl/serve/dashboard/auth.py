"""Sign-in and sessions of the dashboard: hashed secrets, server-side sessions, scopes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from labctl.security.passwords import PasswordFormatError, hash_password, verify_password
from labctl.serve.dashboard.settings import DashboardSettings, DashboardUser

COOKIE = "labctl_dashboard"
PASSWORD_ITERATIONS = 210_000
"""PBKDF2-SHA512 rounds for human-chosen dashboard passwords (OWASP 2023 guidance)."""


def hash_dashboard_password(password: str) -> str:
    """The ``password_hash`` to put in ``labctl.yaml`` for ``password``."""
    return hash_password(password, iterations=PASSWORD_ITERATIONS)


def token_sha256(token: str) -> str:
    """The ``token_sha256`` to put in ``labctl.yaml`` for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Scope:
    """What a signed-in user may see: everything, or one vendor's devices and runs."""

    vendor: str | None
    """``None`` for a department officer."""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``department`` or ``vendor:NAME``."""
        kind, _, name = text.partition(":")
        return cls(name if kind == "vendor" else None)

    def sees_vendor(self, vendor: str) -> bool:
        """True if this user may see devices of ``vendor``."""
        return self.vendor is None or self.vendor == vendor

    def sees_devices(self, devices: list[tuple[str, str]]) -> bool:
        """True if this user may see a run with these (vendor, role) devices: a department
        sees every run; a vendor only runs whose devices under test are all its own (reports
        compare vendors, so a mixed run is for departments only; references are the lab's)."""
        if self.vendor is None:
            return True
        duts = [v for v, role in devices if role != "reference"]
        return bool(duts) and all(v == self.vendor for v in duts)

    def __str__(self) -> str:
        return "department" if self.vendor is None else f"vendor:{self.vendor}"


@dataclass(frozen=True)
class Session:
    """A signed-in browser."""

    user: str
    scope: Scope
    expires: float


def check_secret(user: DashboardUser, secret: str) -> bool:
    """True if ``secret`` is the user's password or token (constant-time comparisons)."""
    if user.token_sha256 is not None:
        return hmac.compare_digest(token_sha256(secret), user.token_sha256)
    if user.password_hash is not None:
        try:
            return verify_password(secret, user.password_hash)
        except PasswordFormatError:
            return False
    return False


class Sessions:
    """Server-side sessions keyed by a random cookie value; lost on restart (sign in again)."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._live: dict[str, Session] = {}

    def authenticate(self, name: str, secret: str) -> Session | None:
        """A new session for ``name`` if ``secret`` matches; None otherwise."""
        found = next((u for u in self.settings.users if u.name == name), None)
        if found is None or not check_secret(found, secret):
            return None
        expires = time.time() + self.settings.session_ttl_s
        return Session(found.name, Scope.parse(found.scope), expires)

    def open(self, session: Session) -> str:
        """Store ``session``; returns the cookie value."""
        self._expire()
        sid = secrets.token_urlsafe(32)
        self._live[sid] = session
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session for a cookie value."""
        if not sid:
            return None
        s = self._live.get(sid)
        if s is None or s.expires < time.time():
            self._live.pop(sid, None)
            return None
        return s

    def close(self, sid: str | None) -> None:
        """Sign out."""
        if sid:
            self._live.pop(sid, None)

    def _expire(self) -> None:
        now = time.time()
        for sid in [k for k, s in self._live.items() if s.expires < now]:
            del self._live[sid]
