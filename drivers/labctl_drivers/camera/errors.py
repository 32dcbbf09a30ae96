"""Errors of the camera driver, in words a lab engineer can act on."""

from __future__ import annotations


class CameraError(Exception):
    """A camera cannot be opened or stopped delivering; the message names the source and why."""


class EvidenceError(Exception):
    """Evidence could not be recorded (directory, codec, frame size); the message says why."""
