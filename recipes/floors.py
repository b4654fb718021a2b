"""Floors for the coverage matrix: how much precision a random-weight stand-in itself can keep.

Random weights with re-estimated BatchNorm can be *chaotic*: a small perturbation at the input
grows layer after layer. On images with little detail it swamps the signal (fused
``mobileone_s0`` at 224 px on upsampled digits: an 8-bit quantizer's error on the input alone left
3.4 dB output SQNR; on the photos of :mod:`edgekit.recipes.photos`, 18.5 dB). Each coverage row
therefore measures, in PyTorch and FP32, the output SQNR when only the input carries an 8-bit
quantizer's error, and when weights and input are rounded to FP16. A low-precision cell whose
floor is below its gate fails on the stand-in, not on the exporter (owner ``stand-in``); the
report also counts the cells within 3 dB of their floor (an input-only floor does not model the
noise an INT8 file adds at every activation, so a cell far below it is not proven ours). The
gates themselves do not move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def input_floors(trained: Any, n_images: int = 48) -> dict[str, float]:
    """Output SQNR (dB, first head, val images) of the FP32 PyTorch model when only its input carries
    an 8-bit quantizer's error (uniform, one step of its per-tensor range wide: what an INT8 file's
    every activation carries), and when weights and input are rounded to FP16 (computed in FP32).
    A low-precision file cannot be expected to beat these."""
    import copy

    import torch

    x = torch.from_numpy(trained.images("val", limit=n_images)[0])
    model = trained.wrapped().eval()
    lo, hi = float(x.min()), float(x.max())
    step = (hi - lo) / 255 or 1.0
    half = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in half.parameters():
            p.copy_(p.half().float())
        ref = model(x)[0].numpy()
        # an 8-bit quantizer's error on a signal that is not on its grid: uniform, one step wide (the
        # digits' 17 grey levels nearly are on it, so rounding them would hide what the activations see)
        noise = (torch.rand(x.shape, generator=gen) - 0.5) * step
        int8_in = model(x + noise)[0].numpy()
        fp16 = half(x.half().float())[0].numpy()
        # one float32 rounding of the input: what any exporter's reordering of FP32 arithmetic adds
        ulp = (torch.rand(x.shape, generator=gen) - 0.5) * 2 * torch.finfo(torch.float32).eps * x.abs()
        fp32 = model(x + ulp)[0].numpy()

    return {"int8_input_db": _db(ref, int8_in), "fp16_db": _db(ref, fp16),
            "fp32_rel": float(f"{abs(fp32 - ref).max() / max(abs(ref).max(), 1e-12):.3g}")}


def bf16_floor(trained: Any, n_images: int = 48) -> float:
    """Output SQNR (dB, first head, val images) of the FP32 PyTorch model with its weights and input rounded to
    bf16 (computed in FP32): what OpenVINO's bf16 execution of an FP32 IR cannot be expected to beat."""
    import copy

    import torch

    x = torch.from_numpy(trained.images("val", limit=n_images)[0])
    model = trained.wrapped().eval()
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.bfloat16().float())
        return _db(model(x)[0].numpy(), rounded(x.bfloat16().float())[0].numpy())


def _db(ref: Any, out: Any) -> float:
    """:func:`~edgekit.export.compare.sqnr_db`, rounded; equal outputs are infinitely far from noise."""
    from edgekit.export.verify import sqnr_db

    value = sqnr_db(ref, out)
    return float("inf") if value is None else round(value, 2)


def pt2e_reference(trained: Any, calib_images: int = 32, n_images: int = 48) -> float | None:
    """Output SQNR (dB) of the TFLite path's own INT8 graph (LiteRT's pt2e quantizer, calibrated on the
    same images as the export) run in PyTorch: what the ``.tflite`` file would give if the converter and
    TFLite's INT8 kernels added nothing. ``None`` when the graph cannot be made."""
    import numpy as np
    import torch

    from edgekit.compress.quantize import QuantConfig, quantize
    from edgekit.train.trained import ChannelsLast

    calib, _ = trained.images("train", limit=calib_images)
    x, _ = trained.images("val", limit=n_images)
    try:
        graph, _ = quantize(ChannelsLast(trained.wrapped()), calib, QuantConfig())
    except Exception:  # noqa: BLE001 - the cell itself says why INT8 failed
        return None
    with torch.no_grad():
        ref = trained.wrapped().eval()(torch.from_numpy(x))[0].numpy()
        out = graph(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1))))[0].numpy()
    return _db(ref, out)


def add_floors(work: Path, arch: str, floors: dict[str, Any] | None) -> dict[str, Any] | None:
    """Floors (and the TFLite pt2e reference) a cached row lacks, from the checkpoint that row exported."""
    from edgekit.train.trained import load_trained

    ckpt = next((p for p in (work / arch / "fused" / "model.pt", work / arch / "probe" / "model.pt") if p.exists()),
                None)
    if ckpt is None:
        return floors
    trained = load_trained(ckpt)
    floors = dict(floors or input_floors(trained))
    if "fp32_rel" not in floors:
        floors["fp32_rel"] = input_floors(trained)["fp32_rel"]
    if "tflite_pt2e_db" not in floors:
        floors["tflite_pt2e_db"] = pt2e_reference(trained)
    if "bf16_db" not in floors:
        floors["bf16_db"] = bf16_floor(trained)
    return floors


FLOOR_OF = {"int8": ("int8_input_db", "only its input carries an 8-bit quantizer's error"),
            "fp16": ("fp16_db", "its weights and input are rounded to FP16"),
            "bf16": ("bf16_db", "its weights and input are rounded to bf16")}  # OpenVINO's FP32 IR on bf16 CPUs
FP32_FLOOR = "fp32_rel"  # max relative output error for a one-ulp (float32) perturbation of the input
NEAR_FLOOR_DB = 3.0


def judge_floors(row: dict[str, Any], gates: dict[str, float]) -> None:
    """Numeric failures below a floor the stand-in itself sets belong to the stand-in (see the module doc)."""
    floors = row.get("floors") or {}
    upstream_tflite(row.get("cells", {}).get("tflite int8"), floors.get("tflite_pt2e_db"), gates["int8"])
    for column, cell in row["cells"].items():
        if column.endswith("fp32") and not cell.get("precision_ran"):
            _judge_fp32(cell, floors.get(FP32_FLOOR), gates.get("fp32", 1e-4))
        precision = cell.get("precision_ran") or ("int8" if column.endswith("int8") else "fp16"
                                                  if column.endswith("fp16") else None)
        if precision not in FLOOR_OF or cell.get("sqnr_db") is None or floors.get(FLOOR_OF[precision][0]) is None:
            continue
        floor = floors[FLOOR_OF[precision][0]]
        cell["floor_db"] = floor
        cell["near_floor"] = cell["sqnr_db"] >= floor - NEAR_FLOOR_DB
        gate = gates[precision]
        if not cell.get("passed") and cell.get("owner") == "numeric" and floor < gate:
            cell["owner"] = "stand-in"
            cell["reason"] = (cell["reason"].split("; the FP32 model")[0] + f"; the FP32 model itself gives "
                              f"{floor:.1f} dB when {FLOOR_OF[precision][1]}: these random weights amplify input "
                              f"noise, so no {precision.upper()} file of them can be expected to reach {gate:g} dB"
                              + (f" (this file is a further {floor - cell['sqnr_db']:.1f} dB below that floor)"
                                 if not cell["near_floor"] else ""))


def _judge_fp32(cell: dict[str, Any], floor: float | None, gate: float) -> None:
    """An FP32 file that misses the relative-error gate of a stand-in which itself moves more than the
    gate when its input moves by one float32 rounding: no reordering of FP32 arithmetic can pass."""
    if floor is None or cell.get("max_rel") is None:
        return
    cell["floor_rel"] = floor
    if not cell.get("passed") and cell.get("owner") == "numeric" and floor > gate:
        cell["owner"] = "stand-in"
        cell["reason"] = (f"{cell['reason']}; the FP32 model itself moves by {floor:.2g} (relative) when its input "
                          "moves by one float32 rounding: these random weights amplify rounding, so no FP32 file "
                          f"that orders its arithmetic differently can be expected to stay within {gate:g}")


def upstream_tflite(cell: dict[str, Any] | None, reference: float | None, gate: float) -> None:
    """A TFLite INT8 cell below the gate whose own pt2e graph meets it in PyTorch: the loss is in the
    LiteRT conversion or TFLite's INT8 kernels, not in the quantization edgekit asked for."""
    if not cell or reference is None or cell.get("sqnr_db") is None:
        return
    cell["pt2e_db"] = reference
    if not cell.get("passed") and cell.get("owner") == "numeric" and reference >= gate:
        cell["owner"] = "upstream (LiteRT conversion / TFLite INT8 kernels)"
        cell["reason"] = (f"{cell['reason']}; the same pt2e INT8 graph run in PyTorch gives {reference:.1f} dB, so "
                          f"the .tflite loses {reference - cell['sqnr_db']:.1f} dB in conversion or in TFLite's "
                          "INT8 kernels")
