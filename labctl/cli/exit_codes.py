"""Exit codes every ``labctl`` command shares."""

from enum import IntEnum


class ExitCode(IntEnum):
    """0 pass, 1 fail verdict, 2 usage/spec error, 3 rig fault, 130 aborted by the operator."""

    PASS = 0
    FAIL = 1
    USAGE = 2
    RIG_FAULT = 3
    ABORTED = 130
