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


class SplitAdd(nn.Module):
    """fasternet_t0's partial convolution in small: split the channels, change one part, concatenate, add to the
    input. Converted at batch 1, the SLICEs keep a size of 1 in the batch axis, and the ADD broadcasts that one
    sample over any batch the interpreter is resized to: outputs of the right shape, wrong values, no error."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        a, b = torch.split(x, [1, 2], dim=3)
        return (self.fc((x + torch.cat([a * 2, b], 3)).mean((1, 2))),)


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return (self.fc(x.mean((1, 2))),)


def _tflite(module, tmp_path, name, golden=True):
    from edgekit.export.golden import _png
    from edgekit.export.tflite import export_tflite

    rng = np.random.default_rng(1)
    card = ModelCard(name=name, arch="custom", heads=[HeadSpec("class", "classification", list("abcd"))],
                     input=InputSpec(size=[8, 8], mean=[0.5] * 3, std=[0.25] * 3))
    if golden:
        card.golden = {"kind": "images", "encoding": "png-base64", "color": "RGB",
                       "inputs": [_png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]}
    return export_tflite(module.eval(), card, tmp_path / f"{name}.tflite", torch.zeros(1, 8, 8, 3))


def test_tflite_graph_whose_resize_is_wrong_runs_in_chunks(tmp_path, monkeypatch):
    """The runtime resizes a TFLite graph only to a batch proven on the card's golden inputs: this graph's
    resize gives wrong values silently, so a batch of 6 runs as 6 calls at batch 1, with batch 1's answers;
    the verdict is remembered per file and batch (here and in the cache folder)."""
    from edgekit.runtime import load

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    module = SplitAdd().eval()
    path = _tflite(module, tmp_path, "split")
    x = np.random.default_rng(0).random((6, 8, 8, 3), dtype=np.float32)
    with torch.no_grad():
        ref = np.concatenate([module(torch.from_numpy(x[i: i + 1]))[0].numpy() for i in range(6)])
    model = load(path, threads=1)
    out = model.run(x)["class"]
    assert np.abs(out - ref).max() < 1e-5  # batch 1's answers (a resize to 6 is off by ~1e-2 here)
    verdict = model.backend.verdicts[6]
    assert verdict["proven"] is False and verdict["inputs"] == "golden" and verdict["max_rel"] > 1e-3
    assert model.backend.input_shape[0] == 1 and model.backend.runs_at(6) == 1
    # a new process on this machine reads the verdict instead of proving again
    import edgekit.runtime.tflite_batches as tb

    monkeypatch.setattr(tb, "probe_inputs", lambda *a, **k: pytest.fail("proved again"))
    again = load(path, threads=1)
    assert np.abs(again.run(x)["class"] - ref).max() < 1e-5 and again.backend.verdicts[6]["proven"] is False


@pytest.mark.parametrize("golden", [True, False])
def test_tflite_graph_proven_at_a_batch_is_resized(tmp_path, monkeypatch, golden):
    """A graph whose resize is right is resized after the proof; without golden inputs in its card the proof
    runs on seeded random pixels through the card's preprocessing (the file is compared with itself)."""
    from edgekit.runtime import load

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    module = Plain().eval()
    model = load(_tflite(module, tmp_path, "plain", golden), threads=1)
    x = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    assert np.abs(model.run(x)["class"] - ref).max() < 1e-5
    verdict = model.backend.verdicts[5]
    assert verdict["proven"] is True and verdict["inputs"] == ("golden" if golden else "random")
    assert model.backend.input_shape[0] == 5 and model.backend.runs_at(5) == 5


@pytest.mark.parametrize(("module", "proven"), [(Plain, True), (SplitAdd, False)])
def test_export_proves_the_batches_the_runtime_will_use(tmp_path, monkeypatch, module, proven):
    """Export's verification of a TFLite file proves it at its own batch and at 8 and 32 (edgekit bench's
    batches) on the card's golden inputs, and writes each verdict into the file's parity entry: a graph whose
    resize is right is proven at each, fasternet's split-and-add is proven at none (and still passes: its
    verification ran in chunks)."""
    from edgekit.export.verify import verify_file
    from edgekit.runtime.metadata import read_card

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    m = module().eval()
    path = _tflite(m, tmp_path, "f")
    x = np.random.default_rng(2).random((4, 3, 8, 8), dtype=np.float32)  # NCHW, as export's check feeds it
    with torch.no_grad():
        ref = {"class": m(torch.from_numpy(x.transpose(0, 2, 3, 1)))[0].numpy()}
    entry = verify_file(path, ref, x, None, read_card(path))
    assert entry["verdict"] == "passed", entry
    assert set(entry["batches"]) == {"4", "8", "32"}, entry["batches"]
    for n, v in entry["batches"].items():
        assert v["proven"] is proven and v["inputs"] == "golden", (n, v)
        assert (v["max_rel"] <= 1e-5) if proven else (v["max_rel"] > 1e-3), (n, v)
