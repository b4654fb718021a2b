"""ONNX INT8: attention graphs keep softmax and the residual stream in float (DeiT-Tiny: -7.3 -> 14.7 dB);
conv nets keep onnxruntime's defaults."""

import numpy as np
import onnx
import torch

from edgekit.card import HeadSpec, InputSpec, ModelCard


class Attentionish(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.norm = torch.nn.LayerNorm(8)
        self.qk = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        t = self.norm(self.conv(x).flatten(2).transpose(1, 2))  # tokens
        attn = torch.softmax(self.qk(t) @ t.transpose(1, 2), dim=-1)
        return (self.head((attn @ t).mean(1)),)


def test_attention_graphs_keep_softmax_and_the_residual_stream_float(tmp_path):
    from edgekit.export.onnx import ATTENTION_FLOAT_OPS, export_onnx, to_int8
    from edgekit.runtime.metadata import read_card

    card = ModelCard("a", "a", [HeadSpec("class", "classification", ["a", "b", "c"])],
                     InputSpec([16, 16], [0.5] * 3, [0.5] * 3))
    fp32 = export_onnx(Attentionish().eval(), card, tmp_path / "model.onnx", torch.zeros(1, 3, 16, 16))
    calib = np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    int8 = to_int8(fp32, card, tmp_path / "model.int8.onnx", calib)
    graph = onnx.load(str(int8)).graph
    produced = {o: n.op_type for n in graph.node for o in n.output}
    fed_by_dq = {n.op_type for n in graph.node if any(produced.get(i) == "DequantizeLinear" for i in n.input)}
    assert {"Conv", "MatMul"} <= fed_by_dq  # the compute ops are integer
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(produced.get(i) != "DequantizeLinear" for n in norms for i in n.input[1:])  # float scale
    assert read_card(int8).provenance["quantization"]["float_ops"] == list(ATTENTION_FLOAT_OPS)


def test_conv_nets_keep_onnxruntime_defaults(exported):
    from edgekit.runtime.metadata import read_card

    card = read_card(exported.out_dir / "model.int8.onnx")  # the tiny conv net: no Softmax, no LayerNorm
    assert card.provenance["quantization"]["float_ops"] == []
