"""Strong generated passwords and Mosquitto 2.0 password files (``$7$`` PBKDF2-SHA512).

labctl computes the hash itself instead of calling ``mosquitto_passwd -b``: the batch mode
puts the password on a command line (visible in ``ps`` and ``/proc``), needs the tool on
the machine that issues identities, and rewrites the file one user per process. The format
is mosquitto's own (``$7${iterations}$base64(salt)$base64(pbkdf2_sha512)``); a test checks it
against ``mosquitto_passwd``'s output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

ITERATIONS = 101
"""mosquitto_passwd's default. Generated passwords carry 192 random bits, so key stretching
adds nothing to them; it only matters for a human-chosen controller password."""

SALT_BYTES = 12


class PasswordFormatError(ValueError):
    """A password file entry labctl cannot read."""


def generate_password(nbytes: int = 24) -> str:
    """A random password (``nbytes`` of entropy, URL-safe characters, no ``:``)."""
    return secrets.token_urlsafe(nbytes)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$`` hash mosquitto 2.0 verifies, as it appears after ``user:``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash (constant-time comparison)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7":
        raise PasswordFormatError("not a mosquitto $7$ (PBKDF2-SHA512) password hash")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise PasswordFormatError(f"malformed $7$ password hash: {exc}") from exc
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


def render_password_file(hashes: Mapping[str, str]) -> str:
    """A mosquitto password file: one ``user:hash`` line per user, sorted by user."""
    lines = []
    for user, hashed in sorted(hashes.items()):
        if not user or ":" in user or "\n" in user:
            raise ValueError(f"user name {user!r} cannot appear in a password file")
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
