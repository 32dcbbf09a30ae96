"""The checklist of ``labctl vendor check``, in the order it is printed.

``docs/protocol.md`` ("Conformance") describes each item for vendors; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable

from labctl.conformance.results import CheckResult, CheckSpec, Outcome

STAGES = ("manifest", "telemetry", "commands", "presence")
"""Stages in running order; ``--skip`` takes ``telemetry``, ``commands`` and ``presence``."""

SKIPPABLE = ("telemetry", "commands", "presence")

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("manifest.present", "manifest", "manifest published on …/manifest"),
    CheckSpec("manifest.valid", "manifest", "manifest follows the labctl/1 schema"),
    CheckSpec("manifest.identity", "manifest", "manifest names the device its topic names"),
    CheckSpec("manifest.noop", "manifest", "manifest declares the conformance command noop"),
    CheckSpec("presence.online", "manifest", "state online with the manifest's session"),
    CheckSpec("manifest.republish", "manifest", "manifest republished when a controller appears"),
    CheckSpec("telemetry.channels", "telemetry", "every declared channel arrives, no other"),
    CheckSpec("telemetry.types", "telemetry", "values fit the declared channel types"),
    CheckSpec("telemetry.rates", "telemetry", "each channel arrives at its declared rate (±50 %)"),
    CheckSpec("telemetry.seq", "telemetry", "one seq per sample: no repeats, no gaps"),
    CheckSpec(
        "telemetry.clock", "telemetry", "device clock within 2 s of the lab's", required=False
    ),
    CheckSpec("command.round_trip", "commands", "noop answered accepted, then succeeded"),
    CheckSpec("command.duplicate", "commands", "a repeated command id is not executed again"),
    CheckSpec("command.expired", "commands", "a command past its deadline is not executed"),
    CheckSpec(
        "command.deadline", "commands", "deadline miss: lab times out, device answers, carries on"
    ),
    CheckSpec("presence.offline", "presence", "clean stop: retained offline, no Last Will"),
    CheckSpec("presence.restart", "presence", "restart: new session, manifest before online"),
    CheckSpec("presence.lost", "presence", "killed: the broker publishes the Last Will lost"),
    CheckSpec("presence.retained", "final", "a newcomer gets the retained manifest and state"),
    CheckSpec("manifest.versions", "final", "manifest versions never go back"),
    CheckSpec("messages.valid", "final", "no message from the device rejected by the lab"),
)


def check(check_id: str) -> CheckSpec:
    """The catalogue entry of ``check_id``."""
    for c in CHECKS:
        if c.id == check_id:
            return c
    raise KeyError(f"no conformance check {check_id!r}")


def in_stage(stage: str) -> tuple[str, ...]:
    """Ids of the checks of ``stage``."""
    return tuple(c.id for c in CHECKS if c.stage == stage)


class Checklist:
    """Results as the run records them; :meth:`results` fills in what was never reached."""

    def __init__(self) -> None:
        self._results: dict[str, CheckResult] = {}

    def record(self, check_id: str, ok: bool, detail: str) -> None:
        """A pass or a fail, with the reason in words (the first word wins)."""
        self._set(check_id, Outcome.PASS if ok else Outcome.FAIL, detail)

    def not_run(self, check_ids: Iterable[str], why: str) -> None:
        """Checks that could not run, and why."""
        for cid in check_ids:
            self._set(cid, Outcome.NOT_RUN, why)

    def skipped(self, check_ids: Iterable[str], why: str) -> None:
        """Checks the operator asked not to run."""
        for cid in check_ids:
            self._set(cid, Outcome.SKIPPED, why)

    def has(self, check_id: str) -> bool:
        """True once ``check_id`` has a result."""
        return check_id in self._results

    def outcome(self, check_id: str) -> Outcome | None:
        """The outcome recorded for ``check_id`` so far."""
        r = self._results.get(check_id)
        return r.outcome if r else None

    def _set(self, check_id: str, outcome: Outcome, detail: str) -> None:
        if check_id not in self._results:
            self._results[check_id] = CheckResult(check(check_id), outcome, detail)

    def results(self) -> tuple[CheckResult, ...]:
        """Every check in catalogue order."""
        return tuple(
            self._results.get(c.id) or CheckResult(c, Outcome.NOT_RUN, "not reached")
            for c in CHECKS
        )
