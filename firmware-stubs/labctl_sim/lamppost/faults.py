"""A node's fault plan: every random fault decision, drawn from the rig seed and the node key.

Outage windows are drawn up front for the whole run; whether a sample is lost is a function of
its index (drawn per block of indices); whether a response is dropped is a function of the
command id and the attempt. So the same seed gives the same faults however samples are
chunked, whatever the node skipped while off, and however commands interleave.
"""

from __future__ import annotations

import bisect

import numpy as np

from labctl_sim.lamppost.spec import FaultParams
from labctl_sim.world import stable_key

_LOSS_BLOCK = 1024


class FaultPlan:
    """The faults of one node over a run of ``span_s`` device seconds."""

    def __init__(self, params: FaultParams, seed: int, key: str, span_s: float) -> None:
        self.params = params
        self._seed = seed
        self._key = stable_key(key)
        outage_rng = np.random.default_rng([seed, stable_key("lamppost-outages"), self._key])
        self.outages = _outages(params, outage_rng, span_s)
        self._starts = [a for a, _ in self.outages]
        self._loss_block: tuple[int, list[bool]] | None = None

    def outage_at(self, elapsed_s: float) -> tuple[float, float] | None:
        """The outage window containing ``elapsed_s`` (device seconds since start), if any."""
        i = bisect.bisect_right(self._starts, elapsed_s) - 1
        if i >= 0 and self.outages[i][1] > elapsed_s:
            return self.outages[i]
        return None

    def next_outage(self, elapsed_s: float) -> tuple[float, float] | None:
        """The first outage window starting at or after ``elapsed_s``."""
        i = bisect.bisect_left(self._starts, elapsed_s)
        return self.outages[i] if i < len(self.outages) else None

    def lost(self, k: int) -> bool:
        """Is sample ``k`` lost (never sent)? A function of the seed, the key and ``k``."""
        if self.params.message_loss_p <= 0.0:
            return False
        index, i = divmod(k, _LOSS_BLOCK)
        if self._loss_block is None or self._loss_block[0] != index:
            rng = np.random.default_rng([self._seed, stable_key("loss"), self._key, index])
            draws = rng.random(_LOSS_BLOCK) < self.params.message_loss_p
            self._loss_block = (index, draws.tolist())
        return self._loss_block[1][i]

    def drop_response(self, command_id: str, attempt: int) -> bool:
        """Is the final response to this attempt of this command dropped?"""
        p = self.params.drop_response_p
        if p <= 0.0:
            return False
        rng = np.random.default_rng(
            [self._seed, self._key, stable_key(command_id), attempt, stable_key("drop")]
        )
        return bool(rng.random() < p)


def _outages(
    p: FaultParams, rng: np.random.Generator, span_s: float
) -> list[tuple[float, float]]:
    """Scheduled plus random windows, merged where they overlap, sorted."""
    windows = [(o.at_s, o.at_s + o.for_s) for o in p.outages]
    if p.outage_rate_per_h > 0:
        t = 0.0
        mean_gap = 3600.0 / p.outage_rate_per_h
        while True:
            t += float(rng.exponential(mean_gap))
            if t >= span_s:
                break
            length = max(1.0, float(rng.exponential(p.outage_mean_s)))
            windows.append((t, t + length))
            t += length
    windows.sort()
    merged: list[tuple[float, float]] = []
    for a, b in windows:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
