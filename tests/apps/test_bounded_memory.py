"""A kiosk that runs all day: what it keeps per frame must not grow with the run's length."""

import numpy as np

from edgekit.apps.analytics import Votes, visitor_record
from edgekit.apps.timing import Durations, StageClock
from edgekit.apps.tracking import IoUTracker, Track
from edgekit.card import HeadSpec


def test_durations_are_exact_then_bounded_within_one_percent():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=-6.0, sigma=0.5, size=50_000)  # ~2.5 ms latencies
    d = Durations()
    for v in samples[:100]:
        d.add(float(v))
    assert d.percentile(50) == np.percentile(samples[:100], 50)  # short runs: exact, as before
    for v in samples[100:]:
        d.add(float(v))
    assert len(d._exact) == 0 and d._hist.size == Durations.BUCKETS  # fixed size from here on
    for q in (50, 90, 99):
        assert abs(d.percentile(q) / np.percentile(samples, q) - 1) < 0.01, q
    assert d.count == 50_000 and abs(d.total - samples.sum()) < 1e-6 and d.max == samples.max()


def test_stage_clock_keeps_no_per_frame_list():
    clock = StageClock()
    for i in range(10_000):
        clock.add("inference", 0.001 + (i % 7) * 1e-4)
    stage = clock.stages["inference"]
    assert stage.count == 10_000 and not stage._exact and clock.breakdown(10_000)["inference"]["calls"] == 10_000
    assert 1.2 < clock.percentile_ms("inference", 50) < 1.45


def test_a_track_votes_in_constant_memory_and_the_vote_is_the_majority():
    heads = [HeadSpec("age", "regression"), HeadSpec("gender", "classification", ["female", "male"]),
             HeadSpec("tags", "multilabel", ["hat", "glasses"])]
    t = Track(id=7, box=(0, 0, 10, 10), first_time=0.0, last_time=600.0, hits=9000)
    t.votes = Votes(heads)
    for i in range(9000):
        t.votes.add({"age": {"value": 30.0 if i % 3 else 9e6}, "gender": {"label": "male" if i % 4 else "female"},
                     "tags": {"labels": ["hat"] if i % 2 else []}})
    assert sum(len(c) for c in t.votes.labels.values()) == 3  # distinct labels, not frames
    rec = visitor_record(t, heads, 0.1)
    assert rec["age"] == 30.0 and rec["age_band"] == "30-44" and rec["gender"] == "male" and rec["tags"] == "hat"


def test_tracks_that_never_became_visitors_are_not_kept():
    tracker = IoUTracker(min_hits=3, max_missed=1)
    for frame in range(3000):  # a new one-frame false positive every 3 frames, somewhere else
        boxes = [(frame * 13 % 600, 0, 20, 20)] if frame % 3 == 0 else []
        tracker.update(boxes, frame / 15)
    assert tracker.finished == [] and len(tracker.active) <= 2
