"""Which tensor of a model file is the output of which PyTorch module (``edgekit diff``, :mod:`edgekit.export.diff`).

PyTorch's side: a forward hook on every named module. The file's side: the module paths its tensors carry
(:mod:`edgekit.runtime.taps`). A module's output in the file is the last tensor the file attributes to that module
or to one of its submodules, in execution order; nothing is matched by position or by guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WRAPPERS = ("", "model.", "module.model.", "module.")  # what edgekit's export wrappers put before module names


def torch_activations(model, x: np.ndarray) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """Every named module's output on ``x`` (NCHW), in the order the modules finished. Returns (order, values,
    aliases): a module called more than once is left out (its output is not one tensor); ``aliases`` maps each
    module's path without its ModuleList/ModuleDict levels (what LiteRT records: those containers are never
    called) to its name."""
    import torch

    seen: dict[str, list[np.ndarray]] = {}
    order: list[str] = []
    calls: dict[str, int] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                if name not in seen:
                    seen[name] = []
                    order.append(name)
                seen[name].append(output.detach().float().numpy().copy())
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    threads = torch.get_num_threads()
    # one input at a time: one thread (measured on the 2 shared cores here under load 13, the tests' 16-px
    # mobileone_s0 on 4 inputs: 27.5 s at 2 threads, 1.3 s at 1: intra-op threads wait on each other)
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for i in range(len(x)):
                calls.clear()
                model(torch.from_numpy(x[i: i + 1]))
                for n, c in calls.items():
                    if c > 1:
                        seen.pop(n, None)
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()
    order = [n for n in order if n in seen and len(seen[n]) == len(x)]
    containers = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.ModuleList, torch.nn.ModuleDict))}
    aliases: dict[str, str] = {}
    for n in order:
        parts = n.split(".")
        called = [p for k, p in enumerate(parts) if ".".join(parts[: k + 1]) not in containers]
        alias = ".".join(called)
        aliases[alias] = n if alias not in aliases else ""  # two modules on one called path: ambiguous
    return order, {n: np.concatenate(seen[n]) for n in order}, {a: n for a, n in aliases.items() if n}


def onnx_scopes_of(model, card, sample: np.ndarray) -> dict[str, str]:
    """ONNX node name (and output tensor name) -> module, from exporting ``model`` as edgekit's exporter does (what
    an OpenVINO IR was converted from: its op names are those node names)."""
    import tempfile

    import onnx
    import torch

    from edgekit.export.onnx import export_onnx
    from edgekit.runtime.taps import onnx_scopes
    from edgekit.train.trained import HeadsAsTuple

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(HeadsAsTuple(model, card.head_names).eval(), card.derive(), Path(tmp) / "m.onnx",
                           torch.from_numpy(sample[:1]))
        return onnx_scopes(onnx.load(str(path), load_external_data=False))


def resolve(modules: list[str], taps, aliases: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Each of ``modules`` -> the file's tap holding its output (the last tap of the module or a submodule), after
    stripping the wrapper prefix that matches most names. Returns (mapping, prefix)."""
    names = set(modules) | set(aliases or {})

    def strip(module: str, prefix: str) -> str | None:
        return module[len(prefix):] if module.startswith(prefix) else None

    prefix = max(WRAPPERS, key=lambda p: sum(1 for t in taps if strip(t.module, p) in names))
    mapping: dict[str, Any] = {}
    for t in taps:  # execution order: a later tap of the same module replaces the earlier one
        name = strip(t.module, prefix)
        if name is None:
            continue
        name = (aliases or {}).get(name, name)
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            mapping[".".join(parts[:k])] = t
    return {m: mapping[m] for m in modules if m in mapping}, prefix


def to_reference_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """A file's activation in PyTorch's layout: NHWC 4-D tensors are transposed to NCHW; others unchanged."""
    return value.transpose(0, 3, 1, 2) if layout == "NHWC" and value.ndim == 4 else value


