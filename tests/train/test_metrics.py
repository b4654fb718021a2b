"""Metrics: LWLRAP against two reference computations, top-5, action accuracy, stable keys."""

import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from edgekit.card import HeadSpec
from edgekit.train.metrics import ACTION_KEY, compute_metrics, lwlrap, monitor_key

# -- references ------------------------------------------------------------------------------------
# Dan Ellis's implementation from the Freesound Audio Tagging 2019 colab ("lwlrap.ipynb"), kept as
# written there apart from np.int/np.bool (removed from numpy).


def _one_sample_positive_class_precisions(scores, truth):
    num_classes = scores.shape[0]
    pos_class_indices = np.flatnonzero(truth > 0)
    if not len(pos_class_indices):
        return pos_class_indices, np.zeros(0)
    retrieved_classes = np.argsort(scores)[::-1]
    class_rankings = np.zeros(num_classes, dtype=int)
    class_rankings[retrieved_classes] = range(num_classes)
    retrieved_class_true = np.zeros(num_classes, dtype=bool)
    retrieved_class_true[class_rankings[pos_class_indices]] = True
    retrieved_cumulative_hits = np.cumsum(retrieved_class_true)
    precision_at_hits = (retrieved_cumulative_hits[class_rankings[pos_class_indices]]
                         / (1 + class_rankings[pos_class_indices].astype(float)))
    return pos_class_indices, precision_at_hits


def calculate_per_class_lwlrap(truth, scores):
    assert truth.shape == scores.shape
    num_samples, num_classes = scores.shape
    precisions_for_samples_by_classes = np.zeros((num_samples, num_classes))
    for sample_num in range(num_samples):
        pos_class_indices, precision_at_hits = _one_sample_positive_class_precisions(scores[sample_num, :],
                                                                                     truth[sample_num, :])
        precisions_for_samples_by_classes[sample_num, pos_class_indices] = precision_at_hits
    labels_per_class = np.sum(truth > 0, axis=0)
    weight_per_class = labels_per_class / float(np.sum(labels_per_class))
    per_class_lwlrap = np.sum(precisions_for_samples_by_classes, axis=0) / np.maximum(1, labels_per_class)
    return per_class_lwlrap, weight_per_class


def ellis_lwlrap(truth, scores):
    per_class, weight = calculate_per_class_lwlrap(truth, scores)
    return float(np.sum(per_class * weight))


def sklearn_lwlrap(truth, scores):
    weights = truth.sum(1)
    return float(label_ranking_average_precision_score(truth, scores, sample_weight=weights))


def _random_case(rng):
    n, c = int(rng.integers(1, 60)), int(rng.integers(2, 40))
    density = rng.uniform(0.02, 0.6)
    truth = (rng.random((n, c)) < density).astype(np.float32)
    truth[rng.random(n) < 0.2] = 0  # samples with no positive label
    if truth.sum() == 0:
        truth[rng.integers(n), rng.integers(c)] = 1
    scores = rng.normal(size=(n, c)) * rng.uniform(0.1, 10) + truth * rng.uniform(0, 2)  # continuous, no ties
    return truth, scores


def test_lwlrap_matches_references_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(300):
        truth, scores = _random_case(rng)
        ours = lwlrap(truth, scores)
        assert ours == pytest.approx(ellis_lwlrap(truth, scores), abs=1e-12)
        assert ours == pytest.approx(sklearn_lwlrap(truth, scores), abs=1e-12)


def test_lwlrap_ties_follow_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(100):
        truth, _ = _random_case(rng)
        scores = rng.integers(0, 3, size=truth.shape).astype(float)  # many ties
        assert lwlrap(truth, scores) == pytest.approx(sklearn_lwlrap(truth, scores), abs=1e-12)


def test_lwlrap_hand_computed():
    # sample 0: positives b (rank 1) and c (rank 3): precisions 1/1 and 2/3
    # sample 1: positive a at rank 2: precision 1/2; sample 2: no positives (ignored)
    truth = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    scores = np.array([[0.5, 0.9, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 0.3]])
    expected = (1 + 2 / 3 + 1 / 2) / 3
    assert lwlrap(truth, scores) == pytest.approx(expected)
    assert ellis_lwlrap(truth, scores) == pytest.approx(expected)
    assert lwlrap(np.zeros((2, 3)), scores[:2]) is None
    assert lwlrap(np.ones((1, 4)), np.zeros((1, 4))) == 1.0
    with pytest.raises(ValueError):
        lwlrap(truth, scores[:, :2])


def test_classification_top5_and_masking():
    rng = np.random.default_rng(0)
    heads = [HeadSpec("digit", "classification", classes=[str(i) for i in range(10)])]
    out = rng.normal(size=(50, 10))
    tgt = rng.integers(0, 10, size=50)
    tgt[:5] = -1
    m = compute_metrics(heads, {"digit": out}, {"digit": tgt})
    valid = tgt >= 0
    top5 = np.argsort(-out[valid], 1)[:, :5]
    assert m["digit/acc"] == pytest.approx((out[valid].argmax(1) == tgt[valid]).mean())
    assert m["digit/top5"] == pytest.approx((top5 == tgt[valid][:, None]).any(1).mean())
    small = [HeadSpec("g", "classification", classes=["a", "b"])]
    assert set(compute_metrics(small, {"g": out[:, :2]}, {"g": tgt % 2})) == {"g/acc"}  # no top5, no action


def test_action_accuracy_both_heads_right():
    heads = [HeadSpec("verb", "classification", classes=list("abc")),
             HeadSpec("noun", "classification", classes=list("wxyz")),
             HeadSpec("age", "regression")]
    verb_t = np.array([0, 1, 2, 0, -1])
    noun_t = np.array([3, 1, 0, 2, 1])
    verb_o = np.eye(3)[[0, 1, 0, 0, 1]]  # right, right, wrong, right, (missing)
    noun_o = np.eye(4)[[3, 1, 0, 0, 1]]  # right, right, right, wrong, right
    m = compute_metrics(heads, {"verb": verb_o, "noun": noun_o, "age": np.zeros((5, 1))},
                        {"verb": verb_t, "noun": noun_t, "age": np.full(5, np.nan, np.float32)})
    assert m[ACTION_KEY] == pytest.approx(2 / 4)  # both right on samples 0 and 1, of the 4 with both labels
    assert m["verb/acc"] == pytest.approx(3 / 4) and m["noun/acc"] == pytest.approx(4 / 5)
    assert "age/mae" not in m
    assert monitor_key(heads) == ("verb/acc", "max")  # unchanged: the first classification head


def test_multilabel_keys():
    rng = np.random.default_rng(0)
    heads = [HeadSpec("tags", "multilabel", classes=list("abcdef"))]
    truth = (rng.random((30, 6)) < 0.3).astype(np.float32)
    logits = rng.normal(size=(30, 6))
    m = compute_metrics(heads, {"tags": logits}, {"tags": truth})
    assert set(m) == {"tags/f1", "tags/map", "tags/lwlrap"}
    assert m["tags/lwlrap"] == pytest.approx(ellis_lwlrap(truth, logits))
    assert monitor_key(heads) == ("tags/map", "max")
