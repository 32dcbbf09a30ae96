"""``SequenceTracker`` against a plain set of every ``(session, seq)`` (the reference), and its
memory: it follows the gaps, not the samples."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from labctl.protocol.inbound import SampleIn
from labctl.rig.sequence import SequenceTracker


def _samples(seqs: list[int]) -> list[SampleIn]:
    return [SampleIn(seq=q, ts=float(q), v={"x": 1.0}) for q in seqs]


@pytest.mark.parametrize("seed", range(6))
def test_same_answers_as_a_set_of_every_seq(seed: int) -> None:
    """Random traffic: in-order batches, gaps, redeliveries, reordering, single samples."""
    rng = random.Random(seed)
    t = SequenceTracker()
    seen: dict[str, set[int]] = {}
    nxt = {"a": 0, "b": 1000}
    for _ in range(3000):
        session = rng.choice("ab")
        kind = rng.random()
        if kind < 0.5:  # the next batch, in order, maybe after a gap
            start = nxt[session] + (rng.randrange(1, 5) if rng.random() < 0.1 else 0)
            seqs = list(range(start, start + rng.randrange(1, 8)))
            nxt[session] = seqs[-1] + 1
        elif kind < 0.7:  # a redelivery of something recent
            top = nxt[session]
            start = rng.randrange(max(0, top - 30), top + 1)
            seqs = list(range(start, start + rng.randrange(1, 5)))
        elif kind < 0.85:  # shuffled, with repeats inside the batch
            top = nxt[session]
            seqs = [rng.randrange(max(0, top - 50), top + 10) for _ in range(rng.randrange(1, 9))]
        else:  # one sample through accept()
            q = rng.randrange(max(0, nxt[session] - 40), nxt[session] + 5)
            ref = seen.setdefault(session, set())
            assert t.accept(session, q) == (q not in ref)
            ref.add(q)
            continue
        ref = seen.setdefault(session, set())
        fresh = [s.seq for s in t.accept_samples(session, _samples(seqs))]
        expected = []
        for q in seqs:
            if q not in ref:
                ref.add(q)
                expected.append(q)
        assert fresh == expected
    counts = t.counts()
    for session, ref in seen.items():
        assert counts[session] == (len(ref), max(ref) - min(ref) + 1 - len(ref))
        runs = t._sessions[session]
        covered = {q for a, b in zip(runs.starts, runs.ends, strict=True) for q in range(a, b + 1)}
        assert covered == ref  # nothing folded at this size: the runs are exactly the set


def test_gap_counts_and_late_fill() -> None:
    t = SequenceTracker()
    assert [t.accept("a", s) for s in (0, 1, 1, 3, 2, 5)] == [True, True, False, True, True, True]
    assert t.counts()["a"] == (5, 1)
    assert t.accept("a", 4) and t.counts()["a"] == (6, 0)
    assert t._sessions["a"].starts == [0] and t._sessions["a"].ends == [5]  # merged into one run
    assert t.accept("b", 7) and t.accept("b", 3) and t.counts()["b"] == (2, 3)


def test_memory_follows_gaps_not_samples() -> None:
    """400 devices × 1 Hz for an hour, 1 % of samples lost: a few KiB per device, where a
    set of every seq held ~200 KiB."""
    rng = random.Random(1)
    trackers = [SequenceTracker() for _ in range(20)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for t in trackers:
            for q in range(3600):
                if rng.random() >= 0.01:
                    t.accept_samples("s", _samples([q]))
        per_device = (tracemalloc.get_traced_memory()[0] - base) / len(trackers)
    finally:
        tracemalloc.stop()
    assert per_device < 8 * 1024
    runs = [len(t._sessions["s"].starts) for t in trackers]
    assert 10 < sum(runs) / len(runs) < 70  # one run per gap (~36 gaps an hour)


def test_folding_bounds_runs_and_old_redeliveries_are_duplicates() -> None:
    t = SequenceTracker(window=100, max_runs=8)
    for q in range(0, 10_000, 2):  # every other seq missing: a run per sample
        t.accept("a", q)
    s = t._sessions["a"]
    assert len(s.starts) <= 8 and s.low >= 9_000
    assert not t.accept("a", 5)  # long folded away: treated as a redelivery
    assert t.accept("a", 9_999) and not t.accept("a", 9_998)
    assert t.counts()["a"] == (5_001, 10_000 - 5_001)
