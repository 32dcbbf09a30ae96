"""``labctl vendor check``: does a vendor's device speak ``labctl/1`` as docs/protocol.md says?

A conformance run is a short, scripted conversation with one device on the rig's broker —
manifest, presence, telemetry, commands and, when the operator can stop, start and kill the
device, its whole life — judged with the lab's own edge and command client. Each check is a
small function that turns observations into a pass or a fail with the reason in words.
"""

from labctl.conformance.context import CheckOptions
from labctl.conformance.results import CheckResult, Outcome, Report
from labctl.conformance.runner import CheckSetupError, run_conformance

__all__ = ["CheckOptions", "CheckResult", "CheckSetupError", "Outcome", "Report", "run_conformance"]
