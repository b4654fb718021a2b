import math

import pytest
import torch

from edgekit.card import HeadSpec
from edgekit.config import HeadConfig
from edgekit.train.losses import TaskLoss
from edgekit.train.metrics import compute_metrics, monitor_key

HEADS = [HeadSpec("cls", "classification", ["a", "b", "c"]), HeadSpec("age", "regression"),
         HeadSpec("tags", "multilabel", ["x", "y"])]


def test_cross_entropy_with_label_smoothing_by_hand():
    loss = TaskLoss(HEADS[:1], label_smoothing=0.1)
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    log_z = math.log(math.exp(2) + 2)
    nll = [log_z - 2.0, log_z, log_z]  # -log p_k
    expected = 0.9 * nll[0] + 0.1 * sum(nll) / 3
    total, terms = loss({"cls": logits}, {"cls": torch.tensor([0])})
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert terms["task/cls"].item() == pytest.approx(expected, rel=1e-6)


def test_missing_labels_are_masked():
    loss = TaskLoss(HEADS[:2])
    out = {"cls": torch.tensor([[5.0, 0, 0], [0, 0, 0]]), "age": torch.tensor([[1.0], [2.0], [3.0]])}
    _, terms = loss.forward({"cls": out["cls"], "age": out["age"][:2]},
                            {"cls": torch.tensor([-1, 1]), "age": torch.tensor([1.5, float("nan")])})
    assert terms["task/cls"].item() == pytest.approx(math.log(3), rel=1e-6)  # only the second row
    assert terms["task/age"].item() == pytest.approx(0.5)
    _, terms = loss({"cls": out["cls"], "age": out["age"][:2]},
                    {"cls": torch.tensor([-1, -1]), "age": torch.tensor([float("nan")] * 2)})
    assert terms["task/cls"].item() == 0.0 and terms["task/age"].item() == 0.0


def test_weights_regression_losses_and_bce_by_hand():
    cfgs = [HeadConfig(name="cls", weight=0.0), HeadConfig(name="age", kind="regression", loss="mse", weight=2.0),
            HeadConfig(name="tags", kind="multilabel", weight=1.0)]
    loss = TaskLoss(HEADS, cfgs)
    out = {"cls": torch.zeros(2, 3), "age": torch.tensor([[1.0], [3.0]]), "tags": torch.tensor([[0.0, 2.0], [0, 0]])}
    tgt = {"cls": torch.tensor([0, 1]), "age": torch.tensor([2.0, 5.0]), "tags": torch.tensor([[1.0, 0.0], [0, 1]])}
    total, terms = loss(out, tgt)
    mse = (1 + 4) / 2
    sp = math.log(1 + math.exp(2))  # -log(1 - sigmoid(2))
    bce = (math.log(2) + sp + math.log(2) + math.log(2)) / 4
    assert terms["task/age"].item() == pytest.approx(mse)
    assert terms["task/tags"].item() == pytest.approx(bce, rel=1e-6)
    assert total.item() == pytest.approx(2 * mse + bce, rel=1e-6)


def test_metrics_and_monitor():
    import numpy as np

    m = compute_metrics(HEADS, {"cls": np.array([[1, 0, 0], [0, 1, 0]]), "age": np.array([[1.0], [4.0]]),
                                "tags": np.array([[3.0, -3.0], [-3.0, 3.0]])},
                        {"cls": np.array([0, 2]), "age": np.array([2.0, np.nan]), "tags": np.array([[1, 0], [0, 1]])})
    assert m["cls/acc"] == 0.5 and m["age/mae"] == 1.0 and m["tags/f1"] == 1.0 and m["tags/map"] == 1.0
    assert monitor_key(HEADS) == ("cls/acc", "max")
    assert monitor_key(HEADS[1:2]) == ("age/mae", "min")
    assert monitor_key(HEADS, "loss") == ("loss", "min")
