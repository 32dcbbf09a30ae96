"""Stage 3: commands — round trip, duplicate id, expired deadline, deadline miss.

All four use the conformance operation ``noop`` (docs/protocol.md): it answers ``accepted``,
waits ``delay_ms`` (default 0), and succeeds with ``{"runs": n}``, the number of ``noop``
commands the device has executed since it booted. ``runs`` is how the check sees whether a
command it should not have executed was executed anyway: after a duplicate or an expired
command, the next ``noop`` must report exactly one more run than the one before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from labctl.commands import CommandClient, CommandOutcome
from labctl.conformance.context import CheckContext
from labctl.conformance.recorder import Seen
from labctl.protocol import topics
from labctl.protocol.payloads import CommandResponse

EXPIRED_WAIT_S = 2.0
"""How long a silently dropped expired command is waited for."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A command check's outcome in words."""

    ok: bool
    detail: str


def runs_of(outcome: CommandOutcome) -> int | None:
    """The ``runs`` counter of a succeeded ``noop``, if it reported a whole number."""
    runs = (outcome.result or {}).get("runs")
    return runs if isinstance(runs, int) and not isinstance(runs, bool) else None


def _why_not(outcome: CommandOutcome, refusals: list[str]) -> str:
    if outcome.status == "timeout":
        base = (
            f"accepted, but no final response within {outcome.latency_s:.3g} s"
            if outcome.accepted
            else f"no answer within {outcome.latency_s:.3g} s"
        )
        return base + (f"; the lab refused its response: {refusals[0]}" if refusals else "")
    return f"answered {outcome.status}" + (f" ({outcome.error})" if outcome.error else "")


def judge_round_trip(outcome: CommandOutcome, refusals: list[str]) -> Verdict:
    """``accepted``, then ``succeeded`` with ``{"runs": n}``."""
    if outcome.status != "succeeded":
        return Verdict(False, "noop " + _why_not(outcome, refusals))
    if not outcome.accepted:
        return Verdict(
            False,
            "noop succeeded without an `accepted` first: answer "
            '{"id":…,"status":"accepted"} as soon as the request is checked, then the final status',
        )
    if runs_of(outcome) is None:
        return Verdict(
            False, f'noop must succeed with result {{"runs": n}}; it sent {outcome.result!r}'
        )
    return Verdict(
        True,
        f"accepted, then succeeded in {outcome.latency_s * 1000:.0f} ms (runs {runs_of(outcome)})",
    )


def judge_duplicate(
    first: CommandOutcome, answer: CommandResponse | None, probe: CommandOutcome, wait_s: float
) -> Verdict:
    """The repeated id is answered from memory (or ``rejected``/``duplicate``), not run."""
    before = runs_of(first)
    assert before is not None
    if answer is None:
        return Verdict(
            False,
            f"no answer to the repeated id within {wait_s:g} s: repeat the stored final "
            "response, or answer rejected with error code `duplicate`",
        )
    repeated = answer.status == first.status and answer.result == first.result
    refused = (
        answer.status == "rejected"
        and answer.error is not None
        and (answer.error.code == "duplicate")
    )
    if answer.status == "succeeded" and not repeated:
        return Verdict(
            False,
            f"executed the repeated id again: its answer reports runs "
            f"{(answer.result or {}).get('runs')!r} where the first reported {before}",
        )
    if not (repeated or refused):
        code = f" code {answer.error.code!r}" if answer.error else ""
        return Verdict(
            False,
            f"answered the repeated id {answer.status}{code}: repeat the first final "
            "response, or answer rejected with code `duplicate`",
        )
    after = runs_of(probe)
    if probe.status != "succeeded" or after is None:
        return Verdict(False, "the next noop did not succeed: " + _why_not(probe, []))
    if after != before + 1:
        return Verdict(
            False,
            f"the repeated id was executed: the next noop reports runs {after}, "
            f"expected {before + 1}",
        )
    how = "repeated its first answer" if repeated else "answered rejected/duplicate"
    return Verdict(True, f"{how}, and did not run it again (runs {before} → {after})")


def judge_expired(
    before: CommandOutcome,
    answer: CommandResponse | None,
    probe: CommandOutcome,
    expired_by_s: float,
) -> Verdict:
    """A request whose deadline has passed is not executed."""
    runs = runs_of(before)
    assert runs is not None
    if answer is not None and answer.status in ("succeeded", "failed"):
        return Verdict(
            False,
            f"executed a command whose deadline was {expired_by_s:g} s past (answered "
            f"{answer.status}): compare the deadline with your clock before starting it",
        )
    after = runs_of(probe)
    if probe.status != "succeeded" or after is None:
        return Verdict(False, "the next noop did not succeed: " + _why_not(probe, []))
    if after != runs + 1:
        return Verdict(
            False,
            f"the expired command was executed: the next noop reports runs {after}, "
            f"expected {runs + 1}",
        )
    if answer is None:
        return Verdict(
            True,
            "not executed (dropped without an answer; answering rejected with code "
            "`expired` is recommended)",
        )
    code = answer.error.code if answer.error else "(none)"
    if code == "expired":
        return Verdict(True, "not executed: answered rejected, code expired")
    return Verdict(True, f"not executed: answered rejected, code {code} (`expired` is the code)")


def judge_deadline(
    missed: CommandOutcome,
    late: CommandResponse | None,
    late_after_s: float | None,
    probe: CommandOutcome,
    delay_ms: int,
) -> Verdict:
    """The lab records a timeout, the device still answers (late), and carries on."""
    abandoned = missed.status == "failed" and (missed.error or "").startswith("deadline:")
    if abandoned and probe.status == "succeeded":
        return Verdict(
            True,
            "abandoned at its deadline (failed, code deadline; its clock runs slightly "
            "ahead of the lab's), and the next noop succeeded",
        )
    if missed.status in ("succeeded", "failed"):
        return Verdict(
            False,
            f"noop with delay_ms {delay_ms} answered {missed.status} after "
            f"{missed.latency_s * 1000:.0f} ms, inside a {missed.latency_s:.3g} s deadline: "
            "noop must take delay_ms before it succeeds",
        )
    if missed.status == "rejected":
        return Verdict(False, f"noop rejected delay_ms ({missed.error}); it must support it")
    if late is None:
        return Verdict(
            False,
            f"the lab recorded a timeout, but no final response ever came (waited "
            f"{delay_ms / 1000:g} s more): every accepted command needs one, even late",
        )
    if probe.status != "succeeded":
        return Verdict(
            False, "after the deadline miss the next noop failed: " + _why_not(probe, [])
        )
    when = f" {late_after_s:.2f} s after sending" if late_after_s is not None else ""
    return Verdict(
        True,
        f"the lab timed out, the late `{late.status}`{when} was logged and not applied, and "
        "the next noop succeeded",
    )


def _final_for(cid: str) -> Callable[[Seen], bool]:
    def match(s: Seen) -> bool:
        return s.kind is topics.TopicKind.CMD_RES and any(
            r.response.id == cid and r.response.final for r in s.result.replies
        )

    return match


def _answer(seen: Seen | None, cid: str) -> CommandResponse | None:
    if seen is None:
        return None
    return next(r.response for r in seen.result.replies if r.response.id == cid)


def _refusals(ctx: CheckContext, cid: str, since: int) -> list[str]:
    return [
        f"{rej.reason}: {rej.detail}"
        for s in ctx.recorder.since(since, topics.TopicKind.CMD_RES)
        for rej in s.result.rejections
        if f"/cmd/{cid}/" in rej.topic
    ]


async def run_command_stage(ctx: CheckContext) -> None:
    """Record the command checks."""
    cl, rec, opts = ctx.checklist, ctx.recorder, ctx.options
    wait = ctx.noop_timeout_s
    ctx.say("commands: round trip")
    mark = rec.mark()
    first = await ctx.send()
    verdict = judge_round_trip(first, _refusals(ctx, first.id, mark))
    cl.record("command.round_trip", verdict.ok, verdict.detail)
    if first.status != "succeeded" or runs_of(first) is None:
        cl.not_run(
            ["command.duplicate", "command.expired", "command.deadline"],
            'needs a working noop that answers {"runs": n}',
        )
        return

    ctx.say("commands: the same id again")
    mark = rec.mark()
    await ctx.send_raw(first.id, {}, time.time() + wait)
    seen = await rec.wait_for(_final_for(first.id), wait, since=mark)
    probe = await ctx.send()
    verdict = judge_duplicate(first, _answer(seen, first.id), probe, wait)
    cl.record("command.duplicate", verdict.ok, verdict.detail)
    if runs_of(probe) is None:
        cl.not_run(["command.expired", "command.deadline"], "noop stopped working")
        return

    ctx.say("commands: a request whose deadline has passed")
    expired_id = CommandClient.new_id()
    mark = rec.mark()
    await ctx.send_raw(expired_id, {}, time.time() - opts.expired_by_s)
    seen = await rec.wait_for(
        _final_for(expired_id),
        min(wait, EXPIRED_WAIT_S),
        since=mark,
    )
    after = await ctx.send()
    verdict = judge_expired(probe, _answer(seen, expired_id), after, opts.expired_by_s)
    cl.record("command.expired", verdict.ok, verdict.detail)

    delay = opts.deadline_delay_ms
    ctx.say(
        f"commands: a deadline miss (noop taking {delay} ms, deadline "
        f"{opts.deadline_timeout_s:g} s)"
    )
    mark = rec.mark()
    missed = await ctx.send({"delay_ms": delay}, timeout_s=opts.deadline_timeout_s)
    seen = await rec.wait_for(
        _final_for(missed.id),
        delay / 1000 + wait,
        since=mark,
    )
    late_after = seen.at - missed.published_at if seen is not None else None
    probe = await ctx.send()
    verdict = judge_deadline(missed, _answer(seen, missed.id), late_after, probe, delay)
    cl.record("command.deadline", verdict.ok, verdict.detail)
