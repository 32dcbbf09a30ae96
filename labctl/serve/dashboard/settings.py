"""Dashboard settings (``dashboard:`` in ``labctl.yaml``): who may sign in, and what they see.

Only hashes are stored: a password as a PBKDF2-SHA512 ``$7$`` hash (``python -m
labctl.serve.dashboard.hashpw``), a token as its SHA-256 in hex. A token is a long random
string, so a fast hash is enough; a human-chosen password gets key stretching.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCOPE_PATTERN = r"^(department|vendor:[a-z0-9][a-z0-9-]{0,62})$"


class DashboardUser(BaseModel):
    """One sign-in: a department officer (sees everything) or a vendor (sees its own)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password_hash: str | None = None
    """``$7$ITERATIONS$SALT$DIGEST`` (PBKDF2-SHA512, base64), never the password itself."""
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 (hex) of the user's sign-in token."""
    scope: str = Field(default="department", pattern=SCOPE_PATTERN)
    """``department`` or ``vendor:NAME`` (only that vendor's devices and runs)."""

    @model_validator(mode="after")
    def _one_secret(self) -> DashboardUser:
        if (self.password_hash is None) == (self.token_sha256 is None):
            raise ValueError(f"dashboard user {self.name!r}: set password_hash or token_sha256")
        return self


class DashboardSettings(BaseModel):
    """The read-only web dashboard of ``labctl serve``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    users: list[DashboardUser] = Field(default_factory=list)
    """Nobody can sign in until the lab lists someone here."""
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    """How long a sign-in lasts."""
    secure_cookie: bool = False
    """Mark the session cookie ``Secure`` (set it when the dashboard is behind HTTPS)."""
