"""Stage 1: the manifest, presence ``online``, and the republish on a controller's arrival."""

from __future__ import annotations

import time

from labctl.conformance.context import CheckContext
from labctl.conformance.recorder import Seen
from labctl.protocol import topics
from labctl.protocol.payloads import MAX_MANIFEST_BYTES

TopicKind = topics.TopicKind


def _is_manifest(s: Seen) -> bool:
    return s.kind is TopicKind.MANIFEST and bool(s.msg.payload)


def _is_state(s: Seen) -> bool:
    return s.kind is TopicKind.STATE and bool(s.msg.payload)


async def run_manifest_stage(ctx: CheckContext) -> bool:
    """Record the manifest and online checks; True when the device is usable for the rest
    (a valid manifest the lab accepted, and ``online``)."""
    cl, rec, ref, t = ctx.checklist, ctx.recorder, ctx.ref, ctx.options.timeout_s
    topic = topics.manifest(ref.vendor, ref.device)
    ctx.say(f"waiting up to {t:g} s for {ref.key}'s manifest and presence")
    first = await rec.wait_for(_is_manifest, t)
    if first is None:
        cl.record(
            "manifest.present",
            False,
            f"no manifest on {topic} within {t:g} s: is the device running? It must publish "
            "its manifest retained (-r) at QoS 1 before `online`",
        )
        cl.not_run(["manifest.valid", "manifest.identity", "manifest.noop"], "no manifest")
        _record_online(ctx, None)
        return False
    how = "retained" if first.retained else "published while the check listened"
    cl.record("manifest.present", True, f"{how} on {topic} ({len(first.msg.payload)} bytes)")
    rejection = first.result.rejections[0] if first.result.rejections else None
    if rejection is not None and rejection.reason in ("json", "schema", "too_large"):
        limit = f" (limit {MAX_MANIFEST_BYTES} bytes)" if rejection.reason == "too_large" else ""
        cl.record("manifest.valid", False, f"{rejection.reason}: {rejection.detail}{limit}")
        cl.not_run(["manifest.identity", "manifest.noop"], "the manifest is not valid")
        _record_online(ctx, None)
        return False
    assert first.manifest is not None
    m = first.manifest
    cl.record(
        "manifest.valid",
        True,
        f"version {m.version}, session {m.session}, {len(m.channels)} channel(s), "
        f"{len(m.commands)} command(s)",
    )
    ctx.note_manifest(first)
    if rejection is not None and rejection.reason == "identity":
        cl.record("manifest.identity", False, rejection.detail)
    else:
        cl.record(
            "manifest.identity",
            True,
            f"{m.device.vendor}/{m.device.id}, model {m.device.model!r}, serial "
            f"{m.device.serial!r}, firmware {m.device.sw_version or '(none)'}",
        )
    ops = [c.op for c in m.commands]
    cl.record(
        "manifest.noop",
        "noop" in ops,
        f"commands: {', '.join(ops)}"
        if "noop" in ops
        else f"commands declared: {', '.join(ops) or 'none'}; every labctl/1 device must "
        'accept and declare {"op": "noop"} (see docs/protocol.md, "Commands")',
    )
    online = await rec.wait_for(lambda s: _online_now(ctx, s, first.index), t)
    _record_online(ctx, online)
    if rejection is not None:
        ctx.checklist.not_run(["manifest.republish"], "the lab refused the manifest")
    if online is None or rejection is not None:
        return False
    await _check_republish(ctx)
    return True


def _online_now(ctx: CheckContext, s: Seen, first: int) -> bool:
    """``online`` with the session of the latest manifest — which a device that restarts
    during the check replaces: follow it."""
    if s.index > first and s.manifest is not None and not s.rejected:
        ctx.note_manifest(s)
    return (
        _is_state(s)
        and s.state is not None
        and s.state.state == "online"
        and s.state.session == ctx.session
    )


def _record_online(ctx: CheckContext, online: Seen | None) -> None:
    cl, ref = ctx.checklist, ctx.ref
    topic = topics.state(ref.vendor, ref.device)
    if online is not None:
        how = "retained" if online.retained else "published while the check listened"
        cl.record("presence.online", True, f"online, session {ctx.session} ({how})")
        return
    states = [s for s in ctx.recorder.seen if _is_state(s)]
    if not states:
        cl.record(
            "presence.online",
            False,
            f"nothing on {topic}: publish "
            '{"state":"online","session":…} retained (-r) at QoS 1 after the manifest',
        )
        return
    last = states[-1]
    if last.state is None:
        why = last.result.rejections[0].detail if last.result.rejections else "unreadable"
        cl.record("presence.online", False, f"the state message is not valid: {why}")
    elif ctx.session is not None and last.state.session != ctx.session:
        cl.record(
            "presence.online",
            False,
            f"state {last.state.state!r} carries session {last.state.session}, but the "
            f"manifest's session is {ctx.session}: both must carry the session of the "
            "current connection",
        )
    else:
        cl.record(
            "presence.online",
            False,
            f"the device is not online: its state is {last.state.state!r} "
            f"(session {last.state.session}); start it and run the check again",
        )
    ctx.checklist.not_run(["manifest.republish"], "the device is not online")


async def _check_republish(ctx: CheckContext) -> None:
    t = ctx.options.timeout_s
    mark = ctx.recorder.mark()
    announced = time.time()
    await ctx.announce("online")
    again = await ctx.recorder.wait_for(_is_manifest, t, since=mark)
    if again is None:
        ctx.checklist.record(
            "manifest.republish",
            False,
            f"announced a controller on {topics.controller_state(ctx.check_id)} and got no "
            f"manifest within {t:g} s: subscribe to lab/v1/_ctl/+/state and republish the "
            'manifest (retained) on every {"state":"online"}',
        )
        return
    ctx.note_manifest(again)
    delay = again.at - announced
    ctx.checklist.record(
        "manifest.republish",
        True,
        f"republished {max(0.0, delay) * 1000:.0f} ms after a controller announced itself",
    )
