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


class PooledHead(torch.nn.Module):
    """A pooled embedding, then a head behind an eval-mode dropout, as every edgekit model has."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.drop = torch.nn.Dropout(0.0)
        self.head = torch.nn.Linear(16, 3)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([2.0, -1.5, 0.5]))

    def forward(self, x):
        y = torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean((2, 3))  # NHWC in, as the TFLite path feeds it
        return (self.head(self.drop(y)),)


def test_int8_tflite_head_keeps_its_bias(tmp_path):
    """No quantizer annotates ``aten.dropout``, so the head's Linear got its own (narrower) input scale;
    LiteRT's converter folded the dropout and that requantization away but kept the bias scaled for
    the narrow input: every head's bias came out several times too small (mobileone_s2: -26 dB)."""
    pytest.importorskip("litert_torch")
    from edgekit.compress.quantize import QuantConfig, quantize
    from edgekit.export.tflite import to_int8
    from edgekit.export.verify import sqnr_db
    from edgekit.runtime.backends import TFLiteBackend

    model = PooledHead().eval()
    calib = np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    graph, _ = quantize(model, calib, QuantConfig())
    assert not [n for n in graph.graph.nodes if "dropout" in str(n.target)]
    card = ModelCard("h", "h", [HeadSpec("class", "classification", ["a", "b", "c"])],
                     InputSpec([16, 16], [0.0] * 3, [1.0] * 3))
    x = torch.from_numpy(calib.transpose(0, 2, 3, 1).copy())
    path = to_int8(model, card, tmp_path / "model.int8.tflite", x[:1], calib)
    backend = TFLiteBackend(path, threads=1)
    out = np.concatenate([backend.run(x[i: i + 1].numpy())[0] for i in range(len(x))])
    with torch.no_grad():
        ref = model(x)[0].numpy()
    assert sqnr_db(ref, out) > 25


def test_tflite_conversion_uses_timms_explicit_attention():
    """LiteRT's SDPA lowering lost precision on MobileNetV4-hybrid (82.5 dB, rel 1.3e-4 against the
    1e-4 FP32 gate); timm's explicit attention path is the same math and converts at 108.7 dB."""
    from edgekit.export.tflite import converter_rewrites
    from edgekit.train.models import build_student

    model = build_student("test_vit", [HeadSpec("class", "classification", ["a", "b"])]).eval()
    attention = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert attention and all(m.fused_attn for m in attention)  # timm's default on this torch
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)["class"]
        with converter_rewrites(model):
            assert not any(m.fused_attn for m in attention)
            torch.testing.assert_close(model(x)["class"], ref, rtol=1e-5, atol=1e-6)
    assert all(m.fused_attn for m in attention)  # restored for the other targets
