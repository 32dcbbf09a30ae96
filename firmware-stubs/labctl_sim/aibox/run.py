"""Run AI boxes against a broker: load the register once, build each variant's detector, serve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from labctl_sim.aibox.detector import SignDetector
from labctl_sim.aibox.device import AiBox
from labctl_sim.aibox.register import load_register
from labctl_sim.aibox.spec import BoxOptions, BoxSpec
from labctl_sim.device import DeviceEvent, Endpoint


async def build_boxes(
    host: str,
    port: int,
    register_dir: Path,
    boxes: list[BoxSpec],
    options: BoxOptions | dict[str, BoxOptions] | None = None,
    on_event: Callable[[DeviceEvent], None] | None = None,
) -> list[AiBox]:
    """Enroll the register (``register_dir/register.json``) into one detector per variant and
    make the boxes. ``options`` applies to every box, or per box key (``vendor/id``).

    Enrolling is CPU work (feature extraction of every template) and runs off the event loop.
    Raises :class:`~labctl_sim.aibox.register.RegisterError` for an unusable register.
    """
    keys = [b.key for b in boxes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"box keys must be unique: {keys}")
    templates = await asyncio.to_thread(load_register, Path(register_dir))
    detectors: dict[str, SignDetector] = {}
    for variant in sorted({b.variant for b in boxes}):
        detectors[variant] = await asyncio.to_thread(SignDetector, templates, variant)
    endpoint = Endpoint(host, port)
    out = []
    for b in boxes:
        opts = options.get(b.key) if isinstance(options, dict) else options
        # Each box gets its own detector: detect() is not safe across threads.
        detector = detectors.pop(b.variant, None)
        if detector is None:
            detector = await asyncio.to_thread(SignDetector, templates, b.variant)
        out.append(AiBox(b, detector, endpoint, opts, on_event))
    return out


async def run_boxes(
    host: str,
    port: int,
    register_dir: Path,
    boxes: list[BoxSpec],
    stop: asyncio.Event,
    options: BoxOptions | dict[str, BoxOptions] | None = None,
    on_event: Callable[[DeviceEvent], None] | None = None,
) -> dict[str, dict[str, object]]:
    """Run ``boxes`` until ``stop`` is set and each has gone offline; their stats by key."""
    built = await build_boxes(host, port, register_dir, boxes, options, on_event)
    async with asyncio.TaskGroup() as tg:
        for box in built:
            tg.create_task(box.run(stop), name=box.key)
    return {box.key: box.stats.as_dict() for box in built}
