"""Opening a serial port (pyserial) and reading/writing it from asyncio without blocking.

pyserial configures the line (baud, 8N1, raw, exclusive lock); the file descriptor is then
used non-blocking with ``loop.add_reader``/``add_writer``, so the event loop never waits on the
port. The open itself may block briefly on real adapters, so callers run it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import termios

import serial


class PortError(OSError):
    """A port cannot be opened or used; ``str()`` says why in words."""


class PortGone(PortError):
    """The device went away (unplugged adapter, closed pty)."""


def _explain_open(path: str, exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return f"no serial port at {path} (is the adapter plugged in? see 'labctl serial scan')"
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied opening {path}: add this user to the group that owns it "
            "(usually 'dialout') and log in again"
        )
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return f"{path} is in use by another program (it is locked for exclusive use)"
    if code == errno.ENOTTY:
        return f"{path} is not a serial port (not a terminal device)"
    return f"cannot open {path}: {exc}"


class SerialPort:
    """An open port; use :meth:`read`/:meth:`write` from the event loop."""

    def __init__(self, path: str, baud: int) -> None:
        self.path = path
        try:
            st = os.stat(path)  # follows by-id symlinks; a dangling one is "not plugged in"
            if not stat.S_ISCHR(st.st_mode):
                raise PortError(f"{path} is not a serial port (not a character device)")
            self._serial = serial.Serial(
                port=path,
                baudrate=baud,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=None,
                exclusive=True,
            )
        except PortError:
            raise
        except (OSError, serial.SerialException, ValueError) as exc:
            raise PortError(_explain_open(path, exc.__cause__ or exc)) from exc
        self.fd = self._serial.fileno()
        try:
            os.set_blocking(self.fd, False)
            # VMIN=1 (pyserial leaves 0): then an empty non-blocking read is EAGAIN, and a
            # read of 0 bytes means the line hung up instead of "nothing yet".
            attrs = termios.tcgetattr(self.fd)
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
            # Bytes that waited in the adapter while nobody listened belong to no session.
            termios.tcflush(self.fd, termios.TCIFLUSH)
        except (OSError, termios.error) as exc:  # unplugged while opening
            self.close()
            raise PortError(f"{path} went away while opening: {exc}") from exc

    async def read(self, n: int = 65536) -> bytes:
        """Bytes available now, waiting for some if none; PortGone when the device went away."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(self.fd, n)
            except BlockingIOError:
                pass
            except OSError as exc:  # EIO: the other side hung up (pty closed, USB unplugged)
                raise PortGone(f"{self.path} went away: {exc.strerror or exc}") from exc
            else:
                if not data:
                    raise PortGone(f"{self.path} went away (end of file)")
                return data
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.fd, _done, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self.fd)

    async def write(self, data: bytes) -> None:
        """Write all of ``data``; PortGone when the device went away."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(self.fd, _done, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(self.fd)
                continue
            except OSError as exc:
                raise PortGone(f"{self.path} went away: {exc.strerror or exc}") from exc
            view = view[n:]

    def close(self) -> None:
        """Release the port (idempotent)."""
        # An unplugged adapter may fail to restore its settings; there is nothing to do then.
        with contextlib.suppress(OSError, serial.SerialException):
            self._serial.close()


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def open_port(path: str, baud: int) -> SerialPort:
    """Open ``path`` at ``baud`` 8N1 raw (blocking briefly: call it in a thread)."""
    return SerialPort(path, baud)
