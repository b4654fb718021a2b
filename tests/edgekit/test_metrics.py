"""edgekit.metrics is the one implementation training, export and the bench worker use: its numpy metrics give
scikit-learn's numbers to the bit, and the worker's accuracy through a runtime is what it computed before."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as skm

from edgekit.card import HeadSpec
from edgekit.metrics import head_metrics, mae, rmse, top1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_metrics_are_sklearns_to_the_bit(dtype):
    rng = np.random.default_rng(0)
    for n in [*range(1, 70), 255, 1000, 4097, 65537]:
        y, p = rng.normal(size=n).astype(dtype), (3 * rng.normal(size=n)).astype(dtype)
        assert mae(p, y) == float(skm.mean_absolute_error(y, p))
        assert rmse(p, y) == float(np.sqrt(skm.mean_squared_error(y, p)))
        t, s = rng.integers(0, 7, size=n), rng.normal(size=(n, 7)).astype(dtype)
        assert top1(s, t) == float(skm.accuracy_score(t, s.argmax(1)))


def test_head_metrics_give_what_training_logged_before():
    """The formulas train/metrics.py used (scikit-learn throughout), on every head kind, with missing labels."""
    rng = np.random.default_rng(1)
    out = rng.normal(size=(300, 8)).astype(np.float32)
    target = rng.integers(-1, 8, size=300)
    v = target >= 0
    got = head_metrics(HeadSpec("c", "classification", classes=list("abcdefgh")), out, target)
    assert got == {"acc": float(skm.accuracy_score(target[v], out[v].argmax(1))),
                   "top5": float(skm.top_k_accuracy_score(target[v], out[v], k=5, labels=np.arange(8)))}
    values = rng.normal(size=(300, 1)).astype(np.float32)
    values[::7] = np.nan
    ok = ~np.isnan(values[:, 0])
    got = head_metrics(HeadSpec("r", "regression"), out[:, :1], values)
    assert got == {"mae": float(skm.mean_absolute_error(values[ok, 0], out[ok, 0])),
                   "rmse": float(np.sqrt(skm.mean_squared_error(values[ok, 0], out[ok, 0])))}
    truth = (rng.random((300, 8)) < 0.2).astype(np.float32)
    truth[:, 3] = 0  # a class without a positive is left out of mAP
    got = head_metrics(HeadSpec("m", "multilabel", classes=list("abcdefgh")), out, truth)
    probs = 1.0 / (1.0 + np.exp(-out))
    keep = truth.sum(0) > 0
    assert got["map"] == float(skm.average_precision_score(truth[:, keep], probs[:, keep], average="macro"))
    assert got["f1"] == float(skm.f1_score(truth, probs >= 0.5, average="micro", zero_division=0))


def test_bench_worker_accuracy_is_unchanged(tmp_path):
    """benchmarks/worker.py counted top-1 by class name and MAE in Python before it used edgekit.metrics."""
    from edgekit.benchmarks.worker import _accuracy

    rng = np.random.default_rng(2)
    n, classes, tags = 37, ["cat", "dog", "owl"], ["rain", "wind", "bird", "car"]
    outs = {"animal": rng.normal(size=(n, 3)).astype(np.float32), "age": rng.normal(size=(n, 1)).astype(np.float32),
            "tags": rng.normal(size=(n, 4)).astype(np.float32)}
    animal = [None if i % 5 == 0 else "fox" if i % 11 == 0 else classes[i % 3] for i in range(n)]
    ages = [None if i % 4 == 0 else float(i) / 7 for i in range(n)]
    labels = [None if i % 6 == 0 else [t for j, t in enumerate(tags) if (i + j) % 3 == 0] for i in range(n)]
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"animal": animal, "age": {"kind": "regression", "values": ages},
                                "tags": {"kind": "multilabel", "classes": tags, "labels": labels}}))
    heads = {"animal": SimpleNamespace(classes=classes), "tags": SimpleNamespace(classes=tags)}
    calls = iter(range(0, n, 8))

    def run(x):
        i = next(calls)
        return {k: v[i: i + len(x)] for k, v in outs.items()}

    model = SimpleNamespace(run=run, preprocess=lambda images, color: np.asarray(images),
                            card=SimpleNamespace(head=heads.get))
    accuracy, metrics = _accuracy(model, np.zeros((n, 2, 2, 3), np.uint8), str(path), 8)
    pairs = [(classes[p], t) for p, t in zip(outs["animal"].argmax(1), animal, strict=True) if t is not None]
    assert accuracy == {"animal": sum(p == t for p, t in pairs) / len(pairs)}
    ok = [(float(p), t) for p, t in zip(outs["age"][:, 0], ages, strict=True) if t is not None]
    assert metrics["age"] == {"mae": float(np.mean([abs(p - t) for p, t in ok]))}
    rows = [i for i, t in enumerate(labels) if t is not None]
    y = np.asarray([[c in labels[i] for c in tags] for i in rows], dtype=float)
    keep = y.sum(0) > 0
    assert metrics["tags"] == {"map": float(skm.average_precision_score(y[:, keep], outs["tags"][rows][:, keep]))}
