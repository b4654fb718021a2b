"""Training's metrics: every per-head metric is :mod:`edgekit.metrics` (one implementation for training, export
and the bench worker); here, what only training needs: a sound's windows folded into one row per sound."""

from __future__ import annotations

import numpy as np

from edgekit.metrics import (  # noqa: F401 - training's names for them
    ACTION_KEY,
    PRIMARY,
    action_accuracy,
    compute_metrics,
    head_metrics,
    lwlrap,
    monitor_key,
)


def per_sound(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], groups: np.ndarray,
              mode: str = "mean") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Window outputs and targets -> one row per sound (``groups[i]``: the sound of window ``i``): the
    outputs aggregated as the runtime aggregates them (:func:`edgekit.runtime.logmel.group_outputs`),
    the targets of each sound's first window (all its windows carry the sound's labels)."""
    from edgekit.runtime.logmel import group_outputs

    groups = np.asarray(groups)
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)
    return group_outputs(outputs, groups, mode), {k: v[first] for k, v in targets.items()}
