import json

import pytest
import torch

from edgekit.compress.reparam import FusionError, fuse_checkpoint, reparameterize
from edgekit.train.checkpoint import model_from_checkpoint


def test_fusion_is_equivalent_smaller_and_reloadable(mobileone_run, tmp_path):
    ckpt = mobileone_run.run_dir / "best.pt"
    report = fuse_checkpoint(ckpt, tmp_path, n_images=64)
    s = report.stats
    assert s["max_rel"] <= 1e-4 and s["errors"]["digit"]["top1_agreement"] == 1.0
    assert s["params_after"] < s["params_before"] / 3 and s["gflops_after"] < s["gflops_before"]
    fused, card, _ = model_from_checkpoint(report.path)
    original, _, _ = model_from_checkpoint(ckpt)
    assert card.provenance["fused"] and card.params == s["params_after"]
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        a, b = fused(x)["digit"], original(x)["digit"]
        # random-normal inputs are far outside the data BatchNorm was estimated on (logits ~1e3):
        # judge them the way the fusion gate does, relative to the output's scale
        assert float((a - b).abs().max() / b.abs().max()) <= 1e-4
    assert json.loads((tmp_path / "reparam.json").read_text())["params_after"] == s["params_after"]
    with pytest.raises(FusionError, match="already fused"):
        fuse_checkpoint(report.path, tmp_path / "again")


def test_a_broken_fusion_is_caught_and_nothing_is_written(mobileone_run, tmp_path):
    def broken(model):
        fused = reparameterize(model)
        with torch.no_grad():
            conv = next(m for m in fused.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[0] > 8)
            conv.weight[0] *= 1.01  # a one-percent error in one filter
        return fused

    with pytest.raises(FusionError, match=r"relative error .* > 1e-04.*nothing written"):
        fuse_checkpoint(mobileone_run.run_dir / "best.pt", tmp_path / "out", n_images=32, fuse=broken)
    assert not (tmp_path / "out").exists()


def test_models_without_branches_are_refused(trained_run, tmp_path):
    with pytest.raises(FusionError, match="no reparameterizable blocks"):
        fuse_checkpoint(trained_run.run_dir / "best.pt", tmp_path)
