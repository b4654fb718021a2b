"""The float-layer search's candidates, per layer: the layers ``edgekit diff`` ranks worst in an INT8 file that
missed its gate, each as the module paths every exporter's skip list takes.

A *layer* is one row of ``edgekit diff`` (:mod:`edgekit.export.diff`): a tensor the file computes, mapped to the
PyTorch module whose output it is. What makes that tensor is every module that finished after the previous row's
module, in PyTorch's execution order: a conv, the BatchNorm folded into it, the activation fused with it. The
modules of a layer kept in float are those of them that hold weights (a conv, its norm, a linear): each is a
module path that ONNX's ``nodes_to_exclude`` (:func:`edgekit.export.onnx.onnx_nodes_in`), NNCF's ignored scope,
and the pt2e quantizers of TFLite and ExecuTorch (:func:`edgekit.compress.quantize.keep_float`) accept. A row
with no weights before it (a pool, a residual add, an activation outlier) is kept in float by its own module.

The rank is the SQNR fall at that row (``drop_db``: how much worse the tensor is than the row before it), largest
first: the first layers where the error jumps, not where it has accumulated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WEIGHTED = ("Conv1d", "Conv2d", "Conv3d", "Linear")  # what "a layer" counts: the ops that hold weight matrices


def _no_op_types() -> tuple[type, ...]:
    import torch

    return (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout2d)


def conv_linear(model) -> list[str]:
    """Module paths of ``model``'s convolutions and linear layers (the count the float fraction is a share of)."""
    import torch

    kinds = tuple(getattr(torch.nn, k) for k in WEIGHTED)
    return [n for n, m in model.named_modules() if n and isinstance(m, kinds)]


def reference(model, x: np.ndarray) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """PyTorch's side of the diff on ``x`` (NCHW), computed once per search: (order, activations, aliases)."""
    from edgekit.export.layer_map import torch_activations

    return torch_activations(model, x)


def rank(path: str | Path, model, x: np.ndarray, ref: tuple) -> list[dict[str, Any]]:
    """The layers of the INT8 file at ``path``, worst first: ``{"layer", "modules", "convs", "sqnr_db",
    "drop_db"}``. Raises when no tensor of the file maps to a module (the caller then searches by block)."""
    from edgekit.errors import ConfigError
    from edgekit.export.diff import EXACT_DB, row_db, rows_of
    from edgekit.export.layer_map import onnx_scopes_of, resolve
    from edgekit.runtime.metadata import read_card
    from edgekit.runtime.taps import ir_scopes, tap_file

    path = Path(path)
    order, acts, aliases = ref
    card = read_card(path)
    layout = card.input.layout
    scopes = onnx_scopes_of(model, card, x) if path.suffix == ".xml" and not ir_scopes(path) else None
    tapped = tap_file(path, x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x, scopes, layout)
    mapping, _ = resolve(order, tapped.taps, aliases)
    rows, _ = rows_of(order, acts, mapping, layout)
    if not rows:
        raise ConfigError(f"no tensor of {path.name} maps to a module of the model")
    dbs = [row_db(r) for r in rows]
    ceiling = max((d for d in dbs if d < EXACT_DB), default=EXACT_DB)  # the best any computed layer does here
    layers, before = [], ceiling
    for u, db in zip(units(model, order, rows), dbs, strict=True):
        if u["modules"]:  # the fall from the row before (the first row: from the best row of the file)
            if layers:
                layers[-1]["next"] = u["layer"]
            layers.append({**u, "sqnr_db": round(db, 2), "drop_db": round(min(before, ceiling) - db, 2),
                           "next": None})
        before = db
    return sorted(layers, key=lambda r: -r["drop_db"])


def units(model, order: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per diff row, the modules that make its tensor: ``{"layer", "modules", "convs"}`` (``convs``: how many of
    them are a conv or a linear)."""
    import torch

    mods = dict(model.named_modules())
    kinds = tuple(getattr(torch.nn, k) for k in WEIGHTED)
    NO_OP = _no_op_types()  # modules that leave no node in a graph  # noqa: N806
    pos = {n: i for i, n in enumerate(order)}
    out, start = [], -1
    for row in rows:
        end = max(pos[n] for n in [row["layer"], *row.get("also", [])] if n in pos)
        span = order[start + 1: end + 1] if end > start else [row["layer"]]
        start = max(start, end)
        weighted = [n for n in span if _holds_weights(mods[n])]
        # no weights: the ops themselves (a pool, an activation), never a block whose children hold weights
        modules = weighted or [n for n in span if not any(True for _ in mods[n].parameters())
                               and not isinstance(mods[n], NO_OP)]
        out.append({"layer": row["layer"], "modules": modules,
                    "convs": sum(isinstance(mods[n], kinds) for n in modules)})
    return out


def _holds_weights(module) -> bool:
    """A module with parameters of its own and none in its children (a conv, a norm with its activation inside):
    never a container whose own parameters are embeddings (a ViT's ``pos_embed`` on the whole backbone)."""
    own = any(True for _ in module.parameters(recurse=False))
    return own and not any(True for c in module.children() for _ in c.parameters())


# -- the search ---------------------------------------------------------------------------------------------------
UNMAPPED = object()  # by_layer's answer when the layers of a format cannot be ranked: search by block instead
TAPPED = (".onnx", ".tflite", ".xml")  # formats whose INT8 file diff reads; others are ranked on ONNX's (proxy)
DIFF_IMAGES = 8  # val images the diff of each failed attempt runs


def by_layer(search, target: str, steps, job, card, verifier, art, step: dict[str, Any]):
    """The per-layer search of ``target`` after its fully INT8 file (``art``, ``step``) missed its gate.

    The layers diff ranks worst go to float a few at a time (1, then 2, 4, ... new layers per attempt), each
    attempt diffed again (the next jump shows once the first is gone), while the conv/linear layers in float stay
    within ``search.max_float`` of the model's; the attempt that passes is then pruned (the last batch halved while
    the file still passes). Returns the kept artifact, ``None`` (``search.failed`` names the layers that keep it
    from passing), or :data:`UNMAPPED` when the file's layers cannot be ranked (``search.layers`` says why)."""
    import time

    from edgekit.errors import first_line

    model = search.trained.model
    total = len(conv_linear(model))
    limit = max(1, int(search.max_float * total))
    record = search.layers[target] = {"by": "layer", "conv_linear_layers": total, "max_float_convs": limit,
                                      "max_float": search.max_float, "diff_seconds": 0.0}
    if not step["made"]:
        search.failed[target] = "the INT8 file could not be made"
        return None

    def _timed(made) -> list[dict[str, Any]]:
        t = time.perf_counter()
        try:
            return _ranking(search, target, job, verifier, made, record)
        finally:
            record["diff_seconds"] = round(record["diff_seconds"] + time.perf_counter() - t, 2)

    present = _present(target, job)

    def ranked(made) -> list[dict[str, Any]]:
        layers = []
        for u in _timed(made):  # each layer as the module names this target's graph has
            names = [m for m in u["modules"] if present is None or m in present]
            if names:
                layers.append({**u, "modules": names})
        return layers

    try:
        ranking = ranked(art)
    except Exception as exc:  # noqa: BLE001 - a file diff cannot map: the search by block still works
        why = f"its layers could not be ranked by diff: {first_line(exc, 160)}"
        search.layers[target] = {"by": "block", "why": why}
        return UNMAPPED
    chosen: list[dict[str, Any]] = []
    batch = 1
    while True:
        add = _next(ranking, chosen, batch, limit)
        if not add:
            return _give_up(search, target, step, chosen, ranking, total, limit)
        before, chosen = chosen, chosen + add
        art, entry, step = _try(search, target, steps, job, card, verifier, chosen)
        if step["passed"]:
            art, entry, chosen = _prune(search, target, steps, job, card, verifier, before, add, art, entry)
            record.update(float_convs=sum(u["convs"] for u in chosen), layers=[u["layer"] for u in chosen])
            return search.keep(target, art, entry, _modules(chosen), verifier)
        if not step["made"]:
            search.failed[target] = f"the INT8 file could not be made with {len(_modules(chosen))} modules in float"
            return None
        if record.get("ranked_by", "").startswith("diff of each"):
            ranking = ranked(art)
        batch *= 2


def _ranking(search, target: str, job, verifier, art, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers of the failed attempt ``art``, worst first; a format diff does not read (ExecuTorch) is ranked
    once on the fully INT8 ONNX file of the same model (onnxruntime's quantizer: a proxy, said in the record)."""
    model, x = search.trained.model, verifier.x[:DIFF_IMAGES]
    cache = search.diffs
    if "reference" not in cache:  # PyTorch's activations: once per export
        cache["reference"] = reference(model, x)
    if art.path.suffix in TAPPED:
        record["ranked_by"] = f"diff of each failed {target} attempt on {len(x)} val images"
        return rank(art.path, model, x, cache["reference"])
    record["ranked_by"] = (f"diff of the fully INT8 ONNX file on {len(x)} val images (a proxy: diff does not read "
                           f"{art.path.suffix} files)")
    if "onnx proxy" not in cache:
        cache["onnx proxy"] = rank(_onnx_int8(search), model, x, cache["reference"])
    return cache["onnx proxy"]


def _present(target: str, job) -> set[str] | None:
    """The modules ``target``'s graph names (``None``: every module with weights; pt2e keeps each as a node). The
    ONNX exporter folds a BatchNorm into its conv and names the fused node after the BatchNorm, so a conv's own name
    is not in an ONNX graph (nor in the IR converted from it)."""
    import ast

    import onnx

    if target == "onnx":
        proto = onnx.load(str(job.fp32), load_external_data=False)
    elif "proto" in job.scratch.get(target, {}):
        proto = job.scratch[target]["proto"]
    else:
        return None
    names = set()
    for node in proto.graph.node:
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                names |= {s[len("model."):] for s in ast.literal_eval(p.value) if s.startswith("model.")}
    return names


def _onnx_int8(search) -> Path:
    """A fully INT8 ONNX file of the model (the proxy ranked for formats diff does not read)."""
    from edgekit.export.onnx import export_onnx, to_int8

    trained = search.trained
    work = search.out / ".int8-search" / "onnx-proxy"
    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(trained.wrapped(), trained.card.derive(), work / "fp32.onnx", trained.sample(1),
                       dynamic_batch=True)
    calib, _ = trained.images("train", limit=search.calib_images, seed=0)
    return to_int8(fp32, trained.card.derive(precision="int8"), work / "int8.onnx", calib, search.calib_method)


def _next(ranking: list[dict[str, Any]], chosen: list[dict[str, Any]], batch: int, limit: int) -> list[dict]:
    """Up to ``batch`` layers of ``ranking`` not yet in float that fit the cap, worst first."""
    taken = set(_modules(chosen))
    convs = sum(u["convs"] for u in chosen)
    by_name = {u["layer"]: u for u in ranking}
    add = []
    for u in [u for u in ranking if u["drop_db"] > 0]:
        if len(add) == batch:
            break
        # a layer already in float whose tensor still falls: what quantizes it is the layer reading it (a
        # quantized op's input is quantized), so its consumer goes to float next
        while u is not None and set(u["modules"]) <= taken:
            u = by_name.get(u["next"])
        if u is None or convs + u["convs"] > limit:
            continue
        add.append(u)
        taken |= set(u["modules"])
        convs += u["convs"]
    return add


def _try(search, target, steps, job, card, verifier, chosen):
    return search.attempt(target, steps, job, card, verifier, _modules(chosen), layers=[u["layer"] for u in chosen],
                          float_convs=sum(u["convs"] for u in chosen))


def _prune(search, target, steps, job, card, verifier, before, add, art, entry):
    """Fewer layers of the last batch ``add`` (``before`` missed, ``before + add`` passed): the shortest prefix of
    ``add`` that still passes, by halving."""
    lo, hi, best = 0, len(add), (art, entry, before + add)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a, e, s = _try(search, target, steps, job, card, verifier, before + add[:mid])
        if s["passed"]:
            hi, best = mid, (a, e, before + add[:mid])
        else:
            lo = mid
    return best


def _give_up(search, target, step, chosen, ranking, total, limit):
    """No next layer fits the cap: the failure names the layers still in the way."""
    worst = [u for u in ranking if not set(u["modules"]) <= set(_modules(chosen)) and u["drop_db"] > 0][:3]
    convs = sum(u["convs"] for u in chosen)
    named = ", ".join(f"{u['layer']} ({u['sqnr_db']:.1f} dB, fell {u['drop_db']:.1f} dB; {u['convs']} conv/linear)"
                      for u in worst) or "none (no layer's SQNR falls)"
    search.layers[target]["capped"] = True
    search.failed[target] = (f"{'; '.join(step['failures'])} with {convs} of {total} conv/linear layers in float "
                             f"(at most {limit}: {search.max_float:.0%}); the layers keeping it from passing, worst "
                             f"first: {named}")
    return None


def _modules(chosen: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(m for u in chosen for m in u["modules"]))
