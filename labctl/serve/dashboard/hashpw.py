"""Print the ``password_hash`` (or with ``--token``, the ``token_sha256``) for a dashboard user.

python -m labctl.serve.dashboard.hashpw            # asks for the password, no echo
python -m labctl.serve.dashboard.hashpw --token    # generates a token, prints it and its hash
"""

from __future__ import annotations

import getpass
import secrets
import sys

from labctl.serve.dashboard.auth import hash_dashboard_password, token_sha256


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = sys.argv[1:] if argv is None else argv
    if "--token" in args:
        token = secrets.token_urlsafe(32)
        print(f"token (give it to the user once): {token}")
        print(f"token_sha256: {token_sha256(token)}")
        return 0
    password = getpass.getpass("dashboard password: ")
    if len(password) < 12:
        print("use at least 12 characters", file=sys.stderr)
        return 2
    print(f"password_hash: '{hash_dashboard_password(password)}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
