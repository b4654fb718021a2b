import pytest
import torch

from edgekit.card import HeadSpec
from edgekit.errors import CheckpointError, ConfigError
from edgekit.train.models import build_student, count_params

HEADS = [HeadSpec("age", "regression"), HeadSpec("gender", "classification", ["f", "m"]),
         HeadSpec("emotion", "classification", list("abcdef"))]


def test_multi_head_student():
    model = build_student("test_efficientnet", HEADS).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"age": (2, 1), "gender": (2, 2), "emotion": (2, 6)}
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, model.embed_dim)
    assert count_params(model) > 0


def test_unknown_arch_suggests_names():
    with pytest.raises(ConfigError, match="unknown timm model 'mobileone_s9'.*mobileone_s0"):
        build_student("mobileone_s9", HEADS)


def test_backbone_weights_file(tmp_path):
    from safetensors.torch import save_file

    src = build_student("test_resnet", HEADS)
    save_file(src.backbone.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": src.backbone.state_dict()}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        dst = build_student("test_resnet", HEADS, weights=tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(src.backbone.state_dict().values(),
                                                     dst.backbone.state_dict().values(), strict=True))
    with pytest.raises(CheckpointError, match="does not fit"):
        build_student("test_efficientnet", HEADS, weights=tmp_path / "w.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        build_student("test_resnet", HEADS, weights=tmp_path / "junk.pth")


@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_dynamic_size_vit_gets_a_fixed_position_embedding(size):
    """timm's dynamic-size ViTs resample their position embedding (antialiased bicubic) at every forward:
    LiteRT, CoreML and ExecuTorch cannot lower that op. Fixed once at the export size, the graph has
    no resize and the outputs do not change."""
    import copy

    from edgekit.train.models import fix_position_embeddings

    torch.manual_seed(0)
    model = build_student("test_vit", HEADS).eval()
    fixed = copy.deepcopy(model)
    assert fix_position_embeddings(fixed, size) == 1
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        for name, ref in model(x).items():
            torch.testing.assert_close(fixed(x)[name], ref, rtol=0, atol=1e-6)
    ops = {str(n.target) for n in torch.export.export(fixed, (x,)).graph.nodes if n.op == "call_function"}
    assert not [op for op in ops if "upsample" in op or "interpolate" in op], ops
    assert fix_position_embeddings(build_student("test_resnet", HEADS), size) == 0  # other models are left alone
