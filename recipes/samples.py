"""Validation samples that travel: the inputs a file was verified on at export, PyTorch's outputs on them and their
labels, in one ``.npz``, so that another machine (a device, over SSH) judges the file exactly as export did.

:func:`build_samples` runs on the host (it needs the checkpoint named in ``parity.json`` and its data: torch);
:func:`samples_gate` runs wherever the file is checked, torch-free: the file through its own runtime on the same
preprocessed tensors, compared and judged by :func:`edgekit.export.verify.verify_file`, the function export uses.
Heads are stored by position (``ref_0``, ``target_0``...): head names are data, any string works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import CardError


def parity_entry(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(parity.json, this file's entry in it)`` beside ``path``; Nones where there is none."""
    parity = path.parent / "parity.json"
    if not parity.is_file():
        return None, None
    try:
        data = json.loads(parity.read_text())
    except (OSError, ValueError):
        return None, None
    entry = next((e for e in data.get("artifacts", []) if e.get("file") == path.name), None)
    return data, entry


def build_samples(path: Path, out: Path, val_images: int | None = None, every: bool = False
                  ) -> tuple[Path | None, str]:
    """The validation samples of ``path``'s export (``val_images`` of them, default: as many as export used; ``every``:
    the whole validation split) written to ``out``; ``(None, why not)`` when they cannot be rebuilt here."""
    data, entry = parity_entry(path)
    if data is None or entry is None:
        return None, "no parity.json entry beside it (a file edgekit did not export)"
    if entry.get("parity_reference"):
        return None, (f"export compared it with its {entry['parity_reference']} model, which is not saved beside it: "
                      "golden inputs only")
    source = data.get("source")
    if not source or not Path(source).is_file():
        return None, f"the checkpoint it was exported from ({source or 'not recorded'}) is not on this machine"
    from edgekit.export.certify import outputs as _outputs
    from edgekit.runtime.metadata import read_card
    from edgekit.train.trained import load_trained

    trained = load_trained(source)
    trained.card.input.size = list(read_card(path).input.size)  # a file exported at another size than trained
    n = None if every else val_images if val_images is not None else data.get("val_images")
    x, targets = trained.images("val", limit=n)
    reference = _outputs(trained.model, trained.card.head_names, x)
    heads = trained.card.head_names
    meta = {"heads": heads, "source": str(source), "val_images": len(x), "source_card": trained.card.to_dict(),
            "gate_overrides": data.get("gate_overrides") or {}}
    arrays = {"x": x.astype(np.float32), "meta": np.array(json.dumps(meta))}
    for i, h in enumerate(heads):
        arrays[f"ref_{i}"] = reference[h].astype(np.float32)
        if h in targets:
            arrays[f"target_{i}"] = np.asarray(targets[h])
    out.parent.mkdir(parents=True, exist_ok=True)
    from edgekit.atomic import write_with

    write_with(out, lambda fh: np.savez_compressed(fh, **arrays))
    return out, f"{len(x)} validation samples of {Path(source).name}'s data, PyTorch's outputs on them"


def load_samples(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """``(x, reference per head, targets per head, meta)`` of a samples file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            heads = meta["heads"]
            ref = {h: z[f"ref_{i}"] for i, h in enumerate(heads)}
            targets = {h: z[f"target_{i}"] for i, h in enumerate(heads) if f"target_{i}" in z.files}
            return z["x"], ref, targets, meta
    except (OSError, ValueError, KeyError) as exc:
        raise CardError(f"{path} is not a samples file edgekit wrote ({exc})") from None


def samples_gate(path: Path, samples: Path) -> dict[str, Any]:
    """The file's precision gate on the samples, through this machine's runtime (as export judged it)."""
    from edgekit.card import ModelCard
    from edgekit.export.gates import describe
    from edgekit.export.verify import verify_file

    x, reference, targets, meta = load_samples(samples)
    entry = verify_file(path, reference, x, targets or None, ModelCard.from_dict(meta["source_card"]),
                        meta.get("gate_overrides") or None)
    if "heads" not in entry:  # CoreML off macOS: structure only
        return {"gate": f"parity on {len(x)} validation samples", "limit": "a numeric check", "passed": False,
                "value": f"not run here ({entry.get('numeric') or 'no runtime'})", "not_run": True}
    heads = entry["heads"]
    worst = max(heads.values(), key=lambda s: s["rel"])
    value = (f"rel {worst['rel']:.1e}" + ("" if worst.get("sqnr_db") is None else f", SQNR {worst['sqnr_db']:.1f} dB")
             + "".join(f", {h} agree {s['top1_agreement'] * 100:.1f}%" for h, s in heads.items()
                       if "top1_agreement" in s)
             + "".join(f", {h} acc {s['accuracy'] * 100:.2f}% (torch {s['reference_accuracy'] * 100:.2f}%)"
                       for h, s in heads.items() if "accuracy" in s))
    failures = entry.get("gate_failures") or []
    return {"gate": f"parity on {len(x)} validation samples ({entry['precision_ran']} gate)",
            "limit": describe(entry["gate"]), "value": value + ("" if entry["passed"] else " — " + "; ".join(failures)),
            "passed": entry["passed"], "heads": heads, "precision_ran": entry["precision_ran"]}
