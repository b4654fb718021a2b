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
          max_size_mb: float | None = None, data: str = "auto", threads: int | None = None,
          seconds: float = 1.0, parity: bool = False, samples: str | Path | None = None) -> list[dict[str, Any]]:
    """Measure what the given gates need and judge them: ``[{gate, limit, value, passed}]``.

    ``parity``: run the golden inputs the card carries through this machine's runtime and judge the
    outputs against PyTorch's stored ones with the file's precision gate (no training data needed).
    ``samples``: also validation samples with PyTorch's outputs on them (an ``.npz`` that ``edgekit check --on``
    builds and sends, :mod:`edgekit.recipes.samples`), judged the same way with their labels."""
    import numpy as np

    from edgekit.benchmarks.stats import latency_stats, time_calls
    from edgekit.recipes.deployment import card_for_file
    from edgekit.runtime import load

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    if max_latency_ms is None and min_accuracy is None and max_size_mb is None and not parity and samples is None:
        raise ConfigError(f"give at least one gate: {option('max_latency_ms')}, {option('min_accuracy')}, "
                          f"{option('max_size_mb')} or {option('parity')}")
    for name, value in (("max_latency_ms", max_latency_ms), ("max_size_mb", max_size_mb)):
        if value is not None and not value > 0:
            raise ConfigError(f"{option(name)} is a limit and must be positive, got {value}")
    if min_accuracy is not None and not 0 <= min_accuracy <= 100:
        raise ConfigError(f"{option('min_accuracy')} is a percentage (0-100), got {min_accuracy}")
    if threads is not None and threads < 1:
        raise ConfigError(f"{option('threads')} must be at least 1, got {threads}")
    gates: list[dict[str, Any]] = []
    size = card_for_file(path)["size_mb"]
    if max_size_mb is not None:
        gates.append({"gate": "size MB", "limit": max_size_mb, "value": size, "passed": size <= max_size_mb})
    if max_latency_ms is None and min_accuracy is None and not parity and samples is None:
        return gates
    model = load(path, device="cpu", threads=threads)
    if parity:
        gates.append(parity_gate(model))
    if samples is not None:
        from edgekit.recipes.samples import samples_gate

        gates.append(samples_gate(path, Path(samples)))
    if max_latency_ms is not None:
        h, w = model.card.input.size
        if model.card.input.audio:  # a sound model: the log-mel of one noise window
            from edgekit.runtime.tagging import frontend

            x = model.preprocess(0.1 * np.random.default_rng(0).standard_normal(frontend(model).window_samples))
        else:
            x = model.preprocess([np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)], color="RGB")
        p50 = latency_stats(time_calls(lambda: model.run(x), min_seconds=seconds))["p50_ms"]
        gates.append({"gate": "latency p50 ms (batch 1)", "limit": max_latency_ms, "value": round(p50, 4),
                      "passed": p50 <= max_latency_ms})
    if min_accuracy is not None:
        acc = _accuracy(model, data)
        gates.append({"gate": f"top-1 accuracy % ({data if data != 'auto' else 'its own val data'})",
                      "limit": min_accuracy, "value": round(acc * 100, 2),
                      "passed": acc * 100 >= min_accuracy})
    return gates


def _accuracy(model, data: str) -> float:
    """Top-1 of the model's first classification head on ``data``'s val split (``auto``: the dataset its card
    names, split as in training), through the runtime."""
    from edgekit.recipes.val_data import AUTO, dataset_files, own_data

    if data == AUTO:
        data = own_data(model.card)
        if data is None:
            raise ConfigError(f"{model.path.name}: its card names no dataset found here "
                              f"({model.card.provenance.get('data') or 'none'}); give one with {option('data')}")
    with tempfile.TemporaryDirectory() as tmp:
        found = dataset_files(model.card, data, Path(tmp))
        if not found:
            raise ConfigError(f"{model.path.name}: no classification head of it has labels in '{data}'")
        files, labels = found
        classified = {h: v for h, v in labels.items() if isinstance(v, list)}
        if not classified:
            raise ConfigError(f"{model.path.name}: no classification head of it has labels in '{data}'")
        head, names = next(iter(classified.items()))
        classes = model.card.head(head).classes
        correct = 0
        for i in range(0, len(files), 64):
            out = model.run(model.preprocess(files[i: i + 64]))[head]
            correct += sum(classes[int(p)] == names[i + j] for j, p in enumerate(out.argmax(1)))
    return correct / max(1, sum(n is not None for n in names))


def parity_gate(model) -> dict[str, Any]:
    """The card's golden inputs through this runtime, judged against the stored PyTorch outputs with the
    gate of the precision that ran here (a backend that cannot say: the one the file was certified with at
    export, where the card records it); a file that ran below the precision it stores (OpenVINO's bf16) is
    also run and judged with its float layers in f32, as export does."""
    from edgekit.export.gates import GATES, describe
    from edgekit.export.verify import compare_outputs, precision_ran, verdict
    from edgekit.runtime.golden import golden_batch, golden_reference

    card = model.card
    if not card.golden:
        raise ConfigError(f"{model.path.name} carries no golden inputs (files exported before edgekit stored them, "
                          "or exported with --no-verify): re-export it to check parity without the training data")
    reference = golden_reference(card.golden)
    batch = golden_batch(card.golden, card.input)
    stats = compare_outputs(card, reference, model.run(batch))
    stored = card.provenance.get("precision", "fp32")
    execution = getattr(model.backend, "execution_precision", None)  # what ran here, as export judges it
    certified = (card.provenance.get("gate") or {}).get("precision_ran")
    precision = precision_ran(stored, execution) if execution else certified or stored.split("-")[0]
    judged = verdict({"heads": stats}, precision if precision in GATES else "fp32")
    worst = max(stats.values(), key=lambda s: s["rel"])
    value = (f"rel {worst['rel']:.1e}" + ("" if worst.get("sqnr_db") is None else f", SQNR {worst['sqnr_db']:.1f} dB")
             + "".join(f", {h} agree {s['top1_agreement'] * 100:.0f}%" for h, s in stats.items()
                       if "top1_agreement" in s))
    gate = {"gate": f"parity on {len(reference[card.head_names[0]])} golden inputs ({precision} gate)",
            "limit": describe(judged["gate"]), "passed": judged["passed"], "heads": stats}
    failures = list(judged["gate_failures"])
    as_stored = getattr(model.backend, "as_stored", None)  # OpenVINO: the same file with its float layers in f32
    if as_stored is not None and precision != stored.split("-")[0]:  # as export does: also at what it stores
        from edgekit.export.verify import stored_check

        again = stored_check(as_stored(), card, reference, batch, None, stored)
        gate["as_stored"] = again
        value += f"; at {again['precision_ran']}: rel {again['max_rel']:.1e}"
        gate["limit"] += f"; and at {again['precision_ran']}: {describe(again['gate'])}"
        failures += [f"run at {again['precision_ran']}: {f}" for f in again["gate_failures"]]
        gate["passed"] = judged["passed"] and again["passed"]
    gate["value"] = value + ("" if gate["passed"] else " — " + "; ".join(failures))
    return gate
