"""The simulator's end of a serial line: the master side of a pty pair, with a stable path.

The slave's ``/dev/pts/N`` changes every time the pair is recreated, so the simulator keeps a
symlink (like ``/dev/serial/by-id/…``) pointing at the current slave; "unplugging" closes the
pair and removes the link, "plugging in" makes a new pair and points the link at it.
"""

from __future__ import annotations

import os
import tty
from pathlib import Path


class PtyLink:
    """One simulated USB-serial adapter."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""

    @property
    def plugged(self) -> bool:
        """True while the pair exists."""
        return self.master is not None

    def plug(self) -> None:
        """Create the pair (raw, non-blocking master) and point the stable link at it."""
        if self.master is not None:
            return
        master, slave = os.openpty()
        # Raw on the slave side: one termios for the pair, no echo, no newline translation.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.slave_name)
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        """Remove the link and close the pair: the controller's reads fail with EIO."""
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None

    def write(self, data: bytes) -> bool:
        """Write a frame; False when it could not go out whole (nobody reading, or unplugged)."""
        if self.master is None:
            return False
        try:
            return os.write(self.master, data) == len(data)
        except (BlockingIOError, OSError):
            return False
