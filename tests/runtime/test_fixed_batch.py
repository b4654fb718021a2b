"""Graphs that fold the batch into constant reshapes (MobileViT, LeViT...): XNNPACK cannot resize
them, so the runtime runs them at their exported batch, in chunks, instead of crashing."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.card import HeadSpec, InputSpec, ModelCard


class FoldsBatch(nn.Module):
    """Flattens with a reshape whose leading 1 is the exported batch (what MobileViT's unfold does)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8 * 8 * 3, 4)

    def forward(self, x):
        return (self.fc(x.reshape(1, -1)),)


def test_tflite_file_that_cannot_resize_runs_in_chunks(tmp_path):
    from edgekit.export.tflite import export_tflite
    from edgekit.runtime import load

    module = FoldsBatch().eval()
    card = ModelCard(name="fold", arch="custom", heads=[HeadSpec("class", "classification", list("abcd"))],
                     input=InputSpec(size=[8, 8], mean=[0.5] * 3, std=[0.25] * 3))
    path = export_tflite(module, card, tmp_path / "fold.tflite", torch.zeros(1, 8, 8, 3))
    model = load(path, threads=1)
    x = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    out = model.run(x)["class"]  # batch 5 on a batch-1 graph: the resize fails, chunks of 1 follow
    with torch.no_grad():
        ref = np.concatenate([module(torch.from_numpy(x[i: i + 1]))[0].numpy() for i in range(5)])
    assert out.shape == (5, 4) and np.abs(out - ref).max() < 1e-5
    assert model.backend.batch == 1
    assert model.run(x[:2])["class"].shape == (2, 4)  # and it stays usable


@pytest.mark.slow
def test_mobilevit_xxs_at_224_exports_and_verifies_on_every_target(tmp_path):
    """The seeds' student at its reference size: every file is written and verified (issue: TFLite
    verification crashed in allocate_tensors when the runtime resized the batch)."""
    from edgekit.config import load_config
    from edgekit.export.exporter import export_checkpoint
    from edgekit.train.supervised import train

    cfg = load_config(overrides={"model.arch": "mobilevit_xxs", "data.imgsz": 224, "data.limit": 64,
                                 "train.epochs": 1, "train.batch_size": 16, "out": str(tmp_path / "runs"),
                                 "name": "mv"})
    run = train(cfg, verbose=False)
    report = export_checkpoint(run.run_dir / "best.pt", ["onnx", "tflite", "coreml"], tmp_path / "export",
                               int8=True, calib_images=32, val_images=40, verbose=False)
    assert not report.failed
    assert {a.path.name for a in report.artifacts} >= {"model.tflite", "model.int8.tflite"}
