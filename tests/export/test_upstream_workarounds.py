"""Workarounds for converter/quantizer bugs the coverage matrix found (docs/coverage.md), each on a
minimal graph with the pattern that triggers it."""

import numpy as np
import pytest
import torch

from edgekit.card import HeadSpec, InputSpec, ModelCard


class Tuple(torch.nn.Module):
    """The heads as a tuple, as edgekit's exporters take them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return (self.model(x),)


class FourierScale(torch.nn.Module):
    """EdgeNeXt's position encoding multiplies activations by an int64 index tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("index", torch.arange(4), persistent=False)

    def forward(self, x):
        y = self.conv(x.permute(0, 3, 1, 2))  # NHWC in, as the TFLite path feeds it
        return (y * (2 * torch.div(self.index, 2, rounding_mode="floor")).view(1, 4, 1, 1)).mean((2, 3))


def test_pt2e_never_observes_integer_operands():
    """Without the guard, LiteRT's quantizer puts a histogram observer on the int64 constant:
    ``"histogram_cpu" not implemented for 'Long'``."""
    from edgekit.compress.quantize import QuantConfig, quantize

    calib = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
    graph, _ = quantize(FourierScale().eval(), calib, QuantConfig())
    x = torch.from_numpy(calib.transpose(0, 2, 3, 1).copy())
    with torch.no_grad():
        assert graph(x).shape == (4, 4)


def test_onnx_int8_survives_a_symbolic_shape_inference_crash(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference crashes on EdgeNeXt's Expand; INT8 then uses ONNX's own."""
    pytest.importorskip("onnxruntime")
    import onnxruntime.quantization.shape_inference as shape_inference

    from edgekit.export import onnx as onnx_target

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    card = ModelCard("tiny", "tiny", [HeadSpec("class", "classification", ["a", "b", "c"])],
                     InputSpec([8, 8], [0.5] * 3, [0.5] * 3))
    fp32 = onnx_target.export_onnx(Tuple(model), card, tmp_path / "model.onnx", torch.zeros(1, 3, 8, 8))
    real = shape_inference.quant_pre_process

    def crashing(src, dst, *args, skip_symbolic_shape=False, **kw):
        if not skip_symbolic_shape:
            raise TypeError("object of type 'NoneType' has no len()")
        return real(src, dst, *args, skip_symbolic_shape=True, **kw)

    monkeypatch.setattr(shape_inference, "quant_pre_process", crashing)
    calib = np.random.default_rng(0).random((8, 3, 8, 8), dtype=np.float32)
    out = onnx_target.to_int8(fp32, card, tmp_path / "model.int8.onnx", calib, "minmax")
    from edgekit.runtime.metadata import read_card

    quant = read_card(out).provenance["quantization"]
    assert quant["shape_inference"].startswith("onnx (onnxruntime's symbolic shape inference failed: object of")


class ZeroPad(torch.nn.Module):
    """EfficientViT's attention pads its tokens by zero on every side."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = torch.nn.functional.pad(self.conv(x).permute(0, 2, 3, 1), [0, 0, 0, 0, 0, 0])
        return (self.head(y.mean((1, 2))),)


def test_int8_pte_with_a_zero_width_pad_loads(tmp_path):
    """XNNPACK lowers a quantized zero-width pad but cannot build it at load time (error 0x1)."""
    pytest.importorskip("executorch")
    from edgekit.export.executorch import export_executorch
    from edgekit.runtime.pte import ExecuTorchBackend

    card = ModelCard("p", "p", [HeadSpec("class", "classification", ["a", "b", "c"])],
                     InputSpec([8, 8], [0.5] * 3, [0.5] * 3))
    calib = np.random.default_rng(0).random((8, 3, 8, 8), dtype=np.float32)
    path = export_executorch(ZeroPad().eval(), card, tmp_path / "model.int8.pte", torch.zeros(1, 3, 8, 8),
                             int8=True, calib=calib)
    assert ExecuTorchBackend(path, threads=1).run(calib[:1])[0].shape == (1, 3)
