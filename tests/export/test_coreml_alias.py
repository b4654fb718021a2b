"""coremltools' torch.export frontend has no `aten.alias` (apple/coremltools#2517; EfficientViT's
attention biases produce it): the CoreML exporter drops the identity before converting."""

import torch
from torch import nn

from edgekit.card import HeadSpec, InputSpec, ModelCard


class WithAlias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("bias", torch.ones(4))

    def forward(self, x):
        return (self.conv(x).mean((2, 3)) + torch.ops.aten.alias(self.bias),)


def test_graph_with_alias_converts_to_coreml(tmp_path):
    from edgekit.export.coreml import check_structure, export_coreml

    program = torch.export.export(WithAlias().eval(), (torch.zeros(1, 3, 16, 16),)).run_decompositions({})
    assert any("alias" in str(n.target) for n in program.graph.nodes)  # the pattern is really there
    card = ModelCard(name="alias", arch="custom", heads=[HeadSpec("class", "classification", list("abcd"))],
                     input=InputSpec(size=[16, 16], mean=[0.5] * 3, std=[0.25] * 3))
    path = export_coreml(WithAlias().eval(), card, tmp_path / "alias.mlpackage", torch.zeros(1, 3, 16, 16))
    assert check_structure(path, card)["structure_ok"]
