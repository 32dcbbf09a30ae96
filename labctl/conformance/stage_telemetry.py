"""Stage 2: watch the telemetry for a window and judge it against the manifest."""

from __future__ import annotations

import asyncio

from labctl.conformance.catalog import in_stage
from labctl.conformance.context import CheckContext
from labctl.conformance.telemetry import (
    Message,
    check_channels,
    check_clock,
    check_rates,
    check_seq,
    check_types,
)
from labctl.protocol import topics
from labctl.protocol.payloads import Manifest

MIN_WINDOW_S = 2.0
MAX_WINDOW_S = 60.0
SAMPLES_WANTED = 5


def window_for(manifest: Manifest, requested: float | None) -> float:
    """The observation window: as requested, or long enough for 5 samples of the slowest
    channel (between 2 and 60 s)."""
    if requested is not None:
        return requested
    slowest = min(c.rate_hz for c in manifest.channels)
    return min(MAX_WINDOW_S, max(MIN_WINDOW_S, SAMPLES_WANTED / slowest))


async def run_telemetry_stage(ctx: CheckContext) -> None:
    """Record the telemetry checks."""
    assert ctx.manifest is not None and ctx.session is not None
    manifest, cl = ctx.manifest, ctx.checklist
    window = window_for(manifest, ctx.options.window_s)
    ctx.say(f"watching telemetry for {window:g} s")
    start = ctx.recorder.mark()
    await asyncio.sleep(window)
    messages = [
        Message(
            s.at,
            tuple(s.result.readings),
            s.result.duplicates,
            f"{s.result.rejections[0].reason}: {s.result.rejections[0].detail}"
            if s.result.rejections
            else None,
        )
        for s in ctx.recorder.since(start, topics.TopicKind.TELEMETRY)
    ]
    found = check_channels(manifest, messages, window)
    cl.record("telemetry.channels", found.ok, found.detail)
    if not any(m.readings for m in messages):
        why = f"no accepted telemetry in {window:g} s"
        for cid in in_stage("telemetry"):
            cl.record(cid, False, why)
        return
    for cid, finding in (
        ("telemetry.types", check_types(manifest, messages)),
        ("telemetry.rates", check_rates(manifest, messages, ctx.session)),
        ("telemetry.seq", check_seq(messages, ctx.session)),
        ("telemetry.clock", check_clock(messages)),
    ):
        cl.record(cid, finding.ok, finding.detail)
