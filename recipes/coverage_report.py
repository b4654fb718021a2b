"""The coverage matrix's report: each cell's verdict, the totals (``summary`` in ``coverage.json``) and
``coverage.md``.

A cell has one of four states (:func:`cell_verdict`): ``passed`` and ``failed`` (its file ran through the edgekit
runtime and was judged), ``not_run`` (made, but not run here: CoreML prediction needs macOS, so its cell is
converted and structure-checked only) and ``absent`` (no result: the row was not run). Pass rates are over the
cells that ran; "not run here" and absent cells are counted apart, never as passes.
"""

from __future__ import annotations

from typing import Any

from edgekit.recipes.floors import NEAR_FLOOR_DB

STATES = ("passed", "failed", "not_run", "absent")
NOT_RUN_HERE = "CoreML prediction needs macOS: converted and its structure checked only"


def cell_verdict(cell: dict[str, Any] | None) -> str:
    """``passed``, ``failed``, ``not_run`` (not run here) or ``absent`` (no result). Rows written before verdicts
    had these states counted a CoreML cell with a good structure as a pass: it is ``not_run``."""
    if cell is None or cell.get("owner") == "not run":
        return "absent"
    if cell.get("verdict") in ("passed", "failed", "not_run"):
        return cell["verdict"]
    if "max_rel" not in cell and cell.get("structure") == "ok":
        return "not_run"
    return "passed" if cell.get("passed") else "failed"


def with_verdicts(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each cell's ``verdict`` written out (and ``passed`` true for ``passed`` only)."""
    for cell in row["cells"].values():
        v = cell_verdict(cell)
        if v != "absent":
            cell["verdict"] = v
            cell["passed"] = v == "passed"
            if v == "not_run":
                cell.setdefault("not_run", NOT_RUN_HERE)
    return row


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The totals the report and the README quote: cells per state, overall and per column; ``pass_pct`` is
    over the cells that ran (``judged``)."""
    cols = result["columns"]
    per = {}
    for c in cols:
        states = [cell_verdict(r["cells"].get(c)) for r in result["rows"]]
        per[c] = {s: states.count(s) for s in STATES}
        per[c]["judged"] = per[c]["passed"] + per[c]["failed"]
    total = {s: sum(p[s] for p in per.values()) for s in (*STATES, "judged")}
    return {"archs": len(result["rows"]), "columns": len(cols), "cells": len(result["rows"]) * len(cols), **total,
            "pass_pct": round(100 * total["passed"] / total["judged"], 1) if total["judged"] else None,
            "by_column": per}


def render(result: dict[str, Any]) -> str:
    cols = result["columns"]
    s = summarize(result)
    lines = ["# Coverage matrix", "",
             f"{s['archs']} architectures x {s['columns']} targets at {result['imgsz']} px: "
             f"**{s['passed']} of {s['judged']} cells that ran pass ({s['pass_pct'] or 0:.0f}%)**"
             + (f"; {s['not_run']} cells not run here ({NOT_RUN_HERE}), counted apart" if s["not_run"] else "")
             + (f"; {s['absent']} cells have no result (not run at all)" if s["absent"] else "") + ".", "",
             f"Machine: {result['machine']}. Latency: batch-1 p50 through the edgekit runtime, "
             f"{result['threads']} threads; rows run one after another on a machine that may be busy, so compare "
             "latencies within a row. Regenerate: `python -m edgekit.recipes.coverage` "
             "(one process per architecture; `--archs a,b` for a subset).", "",
             "Stand-ins: random-init weights (seed 0) with BatchNorm statistics from real photos, and a "
             "logistic-regression probe as the `class` head: " + _data_line(result["rows"]), "",
             "Gates: FP32 max relative error <= 1e-4; FP16 SQNR >= 30 dB; INT8 SQNR >= 10 dB (top-1 agreement is "
             "reported but does not gate). CoreML: not run here (prediction needs macOS); converted and "
             "structure-checked, which can fail a cell but never pass it. "
             "OpenVINO cells are judged at the precision that ran: an FP32 IR runs in bf16 by default on CPUs with "
             "bf16 instructions (SQNR >= 25 dB, shown as `bf16`), and must also pass the FP32 gate with its float "
             "layers forced to f32.", ""]
    lines += floor_lines(result["rows"], cols)
    lines += ["| arch | params | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in result["rows"]:
        params = f"{r['params'] / 1e6:.1f} M" if r.get("params") else "?"
        lines.append(f"| {r['arch']} | {params} | " + " | ".join(_short(r["cells"].get(c)) for c in cols) + " |")
    rates = [s["by_column"][c] for c in cols]  # of the rows that ran the column
    lines.append("| **pass rate** | | " + " | ".join(f"{x['passed']}/{x['judged']}" if x["judged"] else
                                                       "not run here" if x["not_run"] else "-" for x in rates) + " |")
    lines += ["", "Cell: latency in ms (p50, batch 1) and SQNR in dB; `not run here` = made and structure-checked, "
              "prediction needs macOS; `FAIL` = see below.", "", "## Failures", ""]
    for r in result["rows"]:
        for c in cols:
            cell = r["cells"].get(c)
            if cell_verdict(cell) == "failed":
                where = cell.get("owner", "?")
                if cell.get("upstream"):
                    where += f" ({cell['upstream']})"
                action = f" — {cell['action']}" if cell.get("action") else ""
                lines.append(f"- **{r['arch']} / {c}** [{where}]: {cell.get('reason')}{action}")
    unfused = [f"{r['arch']} ({r['fused']['error']})" for r in result["rows"] if (r.get("fused") or {}).get("error")]
    if unfused:
        lines += ["", "Not reparameterized, so exported in training form (`edgekit reparam` refuses a fusion that "
                  "changes the outputs by more than 1e-4): " + "; ".join(unfused) + "."]
    missing = [r["arch"] for r in result["rows"] if r.get("error") == "not run"]
    if missing:
        lines += ["", f"Not run (the session's time ran out; `python -m edgekit.recipes.coverage --archs "
                  f"{','.join(missing)}` runs them): {', '.join(missing)}."]
    lines += ["", "## Details", "", "| arch | target | max rel | cosine | SQNR dB | floor | top-1 agree | "
              "size MB | export s | p50 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for c in cols:
            x = r["cells"].get(c) or {}
            if x.get("passed") is not None and "max_rel" in x:
                lines.append(f"| {r['arch']} | {c} | {x['max_rel']:.1e} | {x['cosine']:.5f} | "
                             f"{_num(x.get('sqnr_db'), '.1f')} | "
                             + (f"{x['floor_rel']:.1e}" if x.get("floor_rel") is not None
                                else _num(x.get("floor_db"), ".1f"))
                             + (f" (pt2e {x['pt2e_db']:.1f})" if x.get("pt2e_db") is not None else "") + " | "
                             f"{_num(x.get('top1_agreement'), '.3f')} | "
                             f"{x.get('size_mb')} | {x.get('export_seconds')} | {x.get('p50_ms', 'n/a')} |")
    lines += ["", "## Versions", ""] + [f"- {k} {v}" for k, v in result["packages"].items()] + [""]
    return "\n".join(lines)


def floor_lines(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    """Failures by owner, and how close the low-precision cells come to the floors their stand-ins set."""
    cells = [r["cells"][c] for r in rows for c in cols if c in r["cells"]]
    owners: dict[str, int] = {}
    for c in cells:
        if cell_verdict(c) == "failed":
            owner = str(c.get("owner", "?")).split(" (")[0]
            owners[owner] = owners.get(owner, 0) + 1
    lines = ["Failing cells by owner: " + ", ".join(f"{k} {v}" for k, v in sorted(owners.items())) + "."
             if owners else "No cell fails."]
    judged = [(c, col) for r in rows for col in cols for c in [r["cells"].get(col) or {}] if "near_floor" in c]
    if judged:
        near = {p: [c["near_floor"] for c, col in judged if col.endswith(p)] for p in ("fp16", "int8")}
        near["bf16"] = [c["near_floor"] for c, _ in judged if c.get("precision_ran") == "bf16"]
        lines.append(
            f"Floors (`floor` below: dB, or a relative error for FP32): the stand-ins are random weights, and a "
            f"perturbation at the input of "
            f"some of them grows through the network. Each row's floor is the FP32 model's own output SQNR with "
            f"an 8-bit quantizer's error on its input only (INT8), or with weights and input in FP16 (bf16 for "
            f"OpenVINO FP32 cells that ran bf16); FP32 cells "
            f"show the relative change of its output when its input moves by one float32 rounding. Cells within "
            f"{NEAR_FLOOR_DB:g} dB of their floor: "
            + ", ".join(f"{p.upper()} {sum(v)} of {len(v)}" for p, v in near.items() if v) + ". An INT8 file also "
            "quantizes every activation, which an input-only floor does not model: an INT8 cell far below its "
            "floor is not thereby the quantizer's fault. TFLite INT8 cells also show `pt2e`: the output SQNR "
            "of the TFLite path's own INT8 graph (LiteRT's pt2e quantizer) run in PyTorch; a file far below it "
            "lost the difference in the LiteRT conversion or TFLite's INT8 kernels.")
    return [*lines, ""]


def _data_line(rows: list[dict[str, Any]]) -> str:
    from edgekit.recipes.photos import PHOTOS

    data = sorted({r.get("data", "digits") for r in rows if r.get("error") != "not run"})
    if data == ["photos"]:
        return (f"crops of the {len(PHOTOS)} photos scikit-image ships, one class per photo "
                "(`edgekit.recipes.photos`: on upsampled 8x8 digits, random backbones barely tell images apart, "
                "so an 8-bit quantizer's noise outweighed the signal).")
    return "images: " + ", ".join(data) + "."


def _short(cell: dict[str, Any] | None) -> str:
    verdict = cell_verdict(cell)
    if verdict == "absent":
        return "not run"
    if verdict == "not_run":
        return "not run here"
    if verdict == "failed":
        return "FAIL"
    if "p50_ms" not in cell:
        return "ok"
    sq, ran = cell.get("sqnr_db"), cell.get("precision_ran")
    return f"{cell['p50_ms']:.2f} ms" + (f", {ran + ' ' if ran else ''}{sq:.0f} dB" if sq is not None else "")


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)
