"""A probe head for the coverage matrix's random-weight stand-ins: a logistic-regression classifier fitted on
the frozen backbone's embeddings, so that their outputs carry signal."""

from __future__ import annotations

from pathlib import Path


def probe_head(ckpt: Path, out: Path, head: str = "class", limit: int = 512) -> Path:
    """Replace the random 1000-way head with a logistic-regression probe fitted on the frozen
    backbone's embeddings of the data's training images (digits, or the photos' crops labelled by
    photo): outputs then carry signal (a random head's logits barely move between images, so any
    quantization noise swamps them), and accuracy means something. The head keeps a user-style
    name (``class`` is a Python keyword)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from edgekit.card import HeadSpec
    from edgekit.train.checkpoint import load_checkpoint, save_checkpoint
    from edgekit.train.models import build_student
    from edgekit.train.trained import load_trained

    src = load_trained(ckpt)
    x, _ = src.images("train", limit=limit)
    data = src._data  # loaded by images(): the targets of the same split, drawn the same way
    n = len(data.train)
    ids = np.arange(n) if n <= limit else np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
    y = data.train.targets[data.heads[0].name][ids]
    with torch.no_grad():
        emb = torch.cat([src.model.forward_features(torch.from_numpy(x[i: i + 32])) for i in range(0, len(x), 32)])
    clf = LogisticRegression(max_iter=2000).fit(emb.numpy(), y)
    classes = list(data.heads[0].classes or [])
    model = build_student(src.card.arch, [HeadSpec(head, "classification", classes)])
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("heads.")}
    model.load_state_dict(state, strict=False)
    coef = np.zeros((len(classes), emb.shape[1]), np.float32)
    bias = np.full(len(classes), -10.0, np.float32)  # a class with no training image never wins
    coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_])
    bias[clf.classes_] = clf.intercept_ if len(clf.classes_) > 2 else np.r_[-clf.intercept_, clf.intercept_]
    with torch.no_grad():
        linear = model.heads[head][1]
        linear.weight.copy_(torch.from_numpy(coef))
        linear.bias.copy_(torch.from_numpy(bias))
    card = src.card.derive(weights=f"random backbone (seed 0) + logistic-regression probe on {len(x)} training images")
    card.heads = model.head_specs
    raw = load_checkpoint(ckpt)
    return save_checkpoint(out / "model.pt", {"card": card.to_dict(), "config": raw["config"],
                                              "model_state": model.state_dict(), "epoch": None})
