"""Last: what a newcomer sees retained, and verdicts over everything the device sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from labctl.bus.mqtt import InboundMessage, MqttBus
from labctl.conformance.context import CheckContext
from labctl.protocol import topics
from labctl.protocol.payloads import Manifest, State

Connect = Callable[[str, Sequence[str]], MqttBus]
"""Opens another bus client: (client id suffix, subscriptions)."""
RETAINED_WAIT_S = 3.0


async def check_retained(ctx: CheckContext, connect: Connect) -> None:
    """A fresh subscriber gets the manifest and the latest state, both retained."""
    ref = ctx.ref
    wanted = (topics.manifest(ref.vendor, ref.device), topics.state(ref.vendor, ref.device))
    got: dict[str, InboundMessage] = {}
    async with connect("-retained", wanted) as bus:
        deadline = time.monotonic() + RETAINED_WAIT_S

        async def collect() -> None:
            async for batch in bus.batches():
                bus.ack(batch)
                for m in batch:
                    if m.retain and m.payload:
                        got[m.topic] = m
                if len(got) == len(wanted):
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), max(0.1, deadline - time.monotonic()))
    problems, parts = [], []
    manifest_msg, state_msg = got.get(wanted[0]), got.get(wanted[1])
    if manifest_msg is None:
        problems.append("no retained manifest: publish it with the retain flag (-r)")
    else:
        try:
            m = Manifest.model_validate_json(manifest_msg.payload)
            parts.append(f"manifest v{m.version} (session {m.session})")
        except ValidationError:
            problems.append("the retained manifest is not valid")
    if state_msg is None:
        problems.append(
            "no retained state: publish online/offline with -r and the will with --will-retain"
        )
    else:
        try:
            s = State.model_validate_json(state_msg.payload)
            parts.append(f"state {s.state} (session {s.session})")
        except ValidationError:
            problems.append("the retained state is not valid")
    ok = not problems
    ctx.checklist.record(
        "presence.retained", ok, "; ".join(problems) if problems else " and ".join(parts)
    )


def check_versions(ctx: CheckContext) -> None:
    """Every manifest the device sent passed the version rules."""
    seen = [s for s in ctx.recorder.seen if s.manifest is not None]
    if not seen:
        ctx.checklist.not_run(["manifest.versions"], "no valid manifest to compare")
        return
    refused = [r.detail for s in seen for r in s.result.rejections if r.reason == "manifest"]
    if refused:
        ctx.checklist.record("manifest.versions", False, refused[0])
        return
    versions = [str(s.manifest.version) for s in seen if s.manifest is not None]
    sessions = len({s.manifest.session for s in seen if s.manifest is not None})
    ctx.checklist.record(
        "manifest.versions",
        True,
        f"{len(seen)} manifest(s) over {sessions} session(s), versions "
        f"{', '.join(versions)}: none went back or changed without a new version",
    )


def check_messages(ctx: CheckContext) -> None:
    """No message from the device was refused by the lab's edge."""
    seen = ctx.recorder.seen
    refused = [(s, r) for s in seen for r in s.result.rejections]
    if not refused:
        ctx.checklist.record(
            "messages.valid", True, f"{len(seen)} message(s), none refused by the lab"
        )
        return
    reasons = Counter(r.reason for _, r in refused)
    first_s, first = refused[0]
    ctx.checklist.record(
        "messages.valid",
        False,
        f"{len(refused)} of {len(seen)} message(s) refused "
        f"({', '.join(f'{n} {k}' for k, n in reasons.most_common())}); first, on "
        f"{first_s.msg.topic}: {first.detail}",
    )
