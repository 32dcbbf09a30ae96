"""Stage 4: presence over a device's life — clean stop, restart, and death (the Last Will)."""

from __future__ import annotations

from labctl.conformance.context import CheckContext
from labctl.conformance.disrupt import Way, perform, way_to
from labctl.conformance.recorder import Seen
from labctl.protocol import topics

TopicKind = topics.TopicKind
WILL_GRACE_S = 1.0
"""After ``offline``, how long the check watches for a Last Will that should not come."""

NO_WAY = (
    "needs --stop-cmd/--start-cmd/--kill-cmd, or a terminal to ask the operator in (--interactive)"
)


def _live_state(s: Seen) -> bool:
    return s.kind is TopicKind.STATE and not s.retained and s.state is not None


async def run_presence_stage(ctx: CheckContext) -> None:
    """Record the lifecycle checks; runs what the available ways allow."""
    cl = ctx.checklist
    stop, start = way_to(ctx, "stop"), way_to(ctx, "start")
    if stop is None:
        cl.not_run(["presence.offline", "presence.restart"], NO_WAY)
    else:
        stopped = await _stop(ctx, stop)
        if not stopped:
            cl.not_run(["presence.restart", "presence.lost"], "the clean stop did not work")
            return
        if start is None:
            cl.not_run(["presence.restart"], NO_WAY)
            cl.not_run(["presence.lost"], "the device is stopped and cannot be started again")
            return
        if not await _restart(ctx, start):
            cl.not_run(["presence.lost"], "the device did not come back")
            return
    kill = way_to(ctx, "kill")
    if kill is None:
        cl.not_run(["presence.lost"], NO_WAY)
        return
    await _kill(ctx, kill)


async def _stop(ctx: CheckContext, way: Way) -> bool:
    cl, rec, wait = ctx.checklist, ctx.recorder, ctx.options.presence_timeout_s
    mark = rec.mark()
    problem = await perform(ctx, "stop", way, wait)
    if problem:
        cl.record("presence.offline", False, problem)
        return False
    got = await rec.wait_for(_live_state, wait, since=mark)
    if got is None or got.state is None:
        cl.record("presence.offline", False, f"no `offline` within {wait:g} s of the stop")
        return False
    if got.state.state == "lost":
        cl.record(
            "presence.offline",
            False,
            "the device went away without `offline`: the broker published its Last Will. "
            'On a normal stop publish {"state":"offline",…} retained, then disconnect cleanly',
        )
        return True  # it is stopped nonetheless
    if got.state.state != "offline":
        cl.record("presence.offline", False, f"expected `offline`, got {got.state.state!r}")
        return False
    if got.state.session != ctx.session:
        cl.record(
            "presence.offline",
            False,
            f"`offline` carries session {got.state.session}, but the device's session is "
            f"{ctx.session}: the lab ignores presence of a stale session",
        )
        return True
    after = rec.mark()
    will = await rec.wait_for(_live_state, WILL_GRACE_S, since=after)
    if will is not None and will.state is not None and will.state.state == "lost":
        cl.record(
            "presence.offline",
            False,
            "`offline` was followed by the Last Will `lost`: the device did not disconnect "
            "cleanly (an MQTT DISCONNECT with reason 0). mosquitto_sub -V mqttv5 sends its "
            "will when stopped by a signal; use -V mqttv311 for the presence connection",
        )
        return True
    cl.record("presence.offline", True, f"offline, session {ctx.session}, no Last Will after it")
    return True


async def _restart(ctx: CheckContext, way: Way) -> bool:
    cl, rec = ctx.checklist, ctx.recorder
    wait, t = ctx.options.presence_timeout_s, ctx.options.timeout_s
    old_sessions = list(ctx.sessions)
    old_version = ctx.manifest.version if ctx.manifest else 0
    mark = rec.mark()
    problem = await perform(ctx, "start", way, wait)
    if problem:
        cl.record("presence.restart", False, problem)
        return False
    first = await rec.wait_for(
        lambda s: s.kind is TopicKind.MANIFEST and bool(s.msg.payload), wait, since=mark
    )
    online = await rec.wait_for(
        lambda s: _live_state(s) and s.state is not None and s.state.state == "online",
        wait if first is None else t,
        since=mark,
    )
    if first is None or first.manifest is None:
        why = "no manifest" if first is None else "an invalid manifest"
        cl.record("presence.restart", False, f"{why} within {wait:g} s of the start")
        return online is not None
    ctx.note_manifest(first)
    session = first.manifest.session
    if online is None or online.state is None:
        cl.record("presence.restart", False, f"manifest, but no `online` within {t:g} s")
        return False
    problems = []
    if session in old_sessions:
        problems.append(f"the session {session} was used before: make a new one on every connect")
    if online.state.session != session:
        problems.append(f"`online` carries session {online.state.session}, the manifest {session}")
    if online.index < first.index:
        problems.append("`online` came before the manifest: publish the manifest first")
    if first.manifest.version < old_version:
        problems.append(
            f"manifest version went back from {old_version} to {first.manifest.version}"
        )
    telemetry = await rec.wait_for(
        lambda s: (
            s.kind is TopicKind.TELEMETRY and any(r.session == session for r in s.result.readings)
        ),
        t,
        since=mark,
    )
    if telemetry is None:
        problems.append(f"no telemetry of the new session within {t:g} s")
    if problems:
        cl.record("presence.restart", False, "; ".join(problems))
    else:
        cl.record(
            "presence.restart",
            True,
            f"new session {session}; manifest v{first.manifest.version}, then online "
            f"{(online.at - first.at) * 1000:.0f} ms later; telemetry resumed",
        )
    return True


async def _kill(ctx: CheckContext, way: Way) -> None:
    cl, rec, wait = ctx.checklist, ctx.recorder, ctx.options.presence_timeout_s
    mark = rec.mark()
    problem = await perform(ctx, "kill", way, wait)
    if problem:
        cl.record("presence.lost", False, problem)
        return
    got = await rec.wait_for(_live_state, wait, since=mark)
    if got is None or got.state is None:
        cl.record(
            "presence.lost",
            False,
            f"no Last Will within {wait:g} s: connect with a will "
            '(topic …/state, payload {"state":"lost","session":…}, QoS 1, retained). '
            "After a power cut the broker notices only after 1.5 × the keepalive",
        )
        return
    if got.state.state != "lost":
        cl.record(
            "presence.lost",
            False,
            f"got {got.state.state!r} instead of the Last Will `lost` — was the device "
            "ended abruptly (kill -9, power), not stopped?",
        )
        return
    if got.state.session != ctx.session:
        cl.record(
            "presence.lost",
            False,
            f"the Last Will carries session {got.state.session}, but the device's session is "
            f"{ctx.session}: the lab ignores it as stale — set the will per connection",
        )
        return
    cl.record("presence.lost", True, f"lost, session {ctx.session}, from the broker")
