"""Stopping, starting and killing the device under check: a command, or the operator.

The check cannot reach into a vendor's device. It either runs the shell command the operator
gave (``--stop-cmd``, ``--start-cmd``, ``--kill-cmd``: how CI and the test suite do it), or,
in a terminal, asks the operator to do it by hand and waits for the device's reaction.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Literal

from labctl.conformance.context import CheckContext

Action = Literal["stop", "start", "kill"]

PROMPTS: dict[Action, str] = {
    "stop": "Stop {device} the normal way now (its off switch, Ctrl-C, a service stop) — "
    "waiting up to {wait:g} s for it to publish `offline`…",
    "start": "Start {device} again now — waiting up to {wait:g} s for its manifest and `online`…",
    "kill": "Now end {device} abruptly: pull its power or network cable, or kill -9 all its "
    "processes — waiting up to {wait:g} s for the broker to publish its Last Will `lost`…",
}


@dataclass(frozen=True, slots=True)
class Way:
    """How an action is done: a shell command, or a prompt to the operator."""

    command: str | None

    @property
    def words(self) -> str:
        """For progress lines."""
        return f"running {self.command!r}" if self.command else "asking the operator"


def way_to(ctx: CheckContext, action: Action) -> Way | None:
    """How ``action`` can be done in this run, or None when it cannot."""
    o = ctx.options
    command = {"stop": o.stop_cmd, "start": o.start_cmd, "kill": o.kill_cmd}[action]
    if command:
        return Way(command)
    return Way(None) if o.interactive else None


async def perform(ctx: CheckContext, action: Action, way: Way, wait_s: float) -> str | None:
    """Do ``action``; return why it could not be done, or None."""
    if way.command is None:
        ctx.say(PROMPTS[action].format(device=ctx.ref.key, wait=wait_s))
        return None
    ctx.say(f"{action}: running {way.command!r}")
    code, output = await asyncio.to_thread(_shell, way.command, ctx.options.timeout_s)
    if code != 0:
        tail = output.strip().splitlines()[-3:]
        return f"--{action}-cmd exited with {code}" + (f": {' / '.join(tail)}" if tail else "")
    return None


def _shell(command: str, timeout_s: float) -> tuple[int, str]:
    """Run the operator's command with ``sh -c``; output goes to a file, not a pipe, so a
    device the command starts in the background cannot hold the check up."""
    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = 124
        out.seek(0)
        text = out.read()[-4000:].decode("utf-8", "replace")
    if code == 124:
        text += f"\n(did not finish within {timeout_s:g} s)"
    return code, text
