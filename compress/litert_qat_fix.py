"""Shim for litert-torch 0.10 + torch 2.14: QAT annotation of conv-bn patterns.

``PT2EQuantizer`` with ``is_qat=True`` builds conv-bn patterns as plain functions and hands them
to ``_get_aten_graph_module_for_pattern``, which now needs an ``nn.Module``; prepare fails with
``ValueError: Expected 'mod' to be an instance of 'torch.nn.Module', got <class 'function'>``.
Inside :func:`litert_qat_fix` the pattern is wrapped in torchao's ``WrapperModule``.

Remove this file (and its one use in ``compress/quantize.py``) once
``tests/compress/test_quantize.py::test_qat_shim_is_still_needed_and_works`` fails: it
checks that the bug is still there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def litert_qat_fix() -> Iterator[None]:
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern, *args, **kwargs):
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, *args, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original
