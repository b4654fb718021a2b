"""``edgekit check FILE``: deployment gates for a CI pipeline (latency, accuracy, size).

Each gate is measured here, on this machine, through the edgekit runtime: size from the file,
batch-1 p50 latency from repeated calls after warm-up, top-1 accuracy of the card's first
classification head on the val split of ``--data``. Returns the gates with their measured values;
the CLI exits 1 when any gate fails (2 for bad input, as everywhere).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, option


def check(path: str | Path, max_latency_ms: float | None = None, min_accuracy: float | None = None,
          max_size_mb: float | None = None, data: str = "digits", threads: int | None = None,
          seconds: float = 1.0) -> list[dict[str, Any]]:
    """Measure what the given gates need and judge them: ``[{gate, limit, value, passed}]``."""
    import numpy as np

    from edgekit.benchmarks.stats import latency_stats, time_calls
    from edgekit.recipes.deployment import card_for_file
    from edgekit.runtime import load

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    if max_latency_ms is None and min_accuracy is None and max_size_mb is None:
        raise ConfigError(f"give at least one gate: {option('max_latency_ms')}, {option('min_accuracy')} or "
                          f"{option('max_size_mb')}")
    if min_accuracy is not None and not 0 <= min_accuracy <= 100:
        raise ConfigError(f"{option('min_accuracy')} is a percentage (0-100), got {min_accuracy}")
    gates: list[dict[str, Any]] = []
    size = card_for_file(path)["size_mb"]
    if max_size_mb is not None:
        gates.append({"gate": "size MB", "limit": max_size_mb, "value": size, "passed": size <= max_size_mb})
    if max_latency_ms is None and min_accuracy is None:
        return gates
    model = load(path, device="cpu", threads=threads)
    if max_latency_ms is not None:
        h, w = model.card.input.size
        x = model.preprocess([np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)], color="RGB")
        p50 = latency_stats(time_calls(lambda: model.run(x), min_seconds=seconds))["p50_ms"]
        gates.append({"gate": "latency p50 ms (batch 1)", "limit": max_latency_ms, "value": round(p50, 4),
                      "passed": p50 <= max_latency_ms})
    if min_accuracy is not None:
        acc = _accuracy(model, data)
        gates.append({"gate": f"top-1 accuracy % ({data})", "limit": min_accuracy, "value": round(acc * 100, 2),
                      "passed": acc * 100 >= min_accuracy})
    return gates


def _accuracy(model, data: str) -> float:
    """Top-1 of the model's first classification head on ``data``'s val split, through the runtime."""
    from edgekit.recipes.bench import dataset_files

    with tempfile.TemporaryDirectory() as tmp:
        found = dataset_files(model.card, data, Path(tmp))
        if not found:
            raise ConfigError(f"{model.path.name}: no classification head of it has labels in '{data}'")
        files, labels = found
        head, names = next(iter(labels.items()))
        classes = model.card.head(head).classes
        correct = 0
        for i in range(0, len(files), 64):
            out = model.run(model.preprocess(files[i: i + 64]))[head]
            correct += sum(classes[int(p)] == names[i + j] for j, p in enumerate(out.argmax(1)))
    return correct / len(files)
