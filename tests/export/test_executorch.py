"""ExecuTorch target: FP32 / INT8 ``.pte`` through XNNPACK, the card inside, the ``.pte`` backend."""

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.errors import DependencyError

HEAD = "émotion / class 1"  # a user's head name: data, never an identifier


@pytest.fixture(scope="module")
def pte(trained_run, tmp_path_factory):
    """The tiny model at 32 px, exported FP32 and INT8 (batch 4) with a renamed head, plus PyTorch's outputs."""
    pytest.importorskip("executorch")
    import torch

    from edgekit.export.executorch import export_executorch
    from edgekit.train.trained import load_trained

    trained = load_trained(trained_run.run_dir / "best.pt")
    trained.card.input.size = [32, 32]
    module, sample = trained.wrapped(), trained.sample(4)
    x, targets = trained.images("val", limit=62)  # 62: the last chunk of 4 is padded
    calib = trained.images("train", limit=64)[0]
    card = trained.card.derive(precision="fp32")
    card.heads[0].name = HEAD
    out = tmp_path_factory.mktemp("pte")
    seconds = {}
    t0 = time.perf_counter()
    fp32 = export_executorch(module, card, out / "model.pte", sample)
    seconds["fp32"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8 = export_executorch(module, card.derive(precision="int8"), out / "model.int8.pte", sample, int8=True,
                             calib=calib)
    seconds["int8"] = time.perf_counter() - t0
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    return SimpleNamespace(fp32=fp32, int8=int8, x=x, ref=ref, card=card, seconds=seconds, dir=out)


def _predictor(path):
    from edgekit.runtime.metadata import read_card
    from edgekit.runtime.predictor import Predictor
    from edgekit.runtime.pte import ExecuTorchBackend

    return Predictor(ExecuTorchBackend(path, threads=1), read_card(path), path)


def test_fp32_matches_pytorch_in_chunks_of_the_exported_batch(pte):
    model = _predictor(pte.fp32)
    assert model.backend.name == "executorch" and model.backend.batch == 4
    got = model.run(pte.x)[HEAD]  # 62 images: 15 chunks of 4 and one padded
    rel = np.abs(got - pte.ref).max() / np.abs(pte.ref).max()
    print(f"\nfp32 .pte: max rel error {rel:.2e}, export {pte.seconds['fp32']:.1f}s")
    assert got.shape == pte.ref.shape and rel < 1e-4
    direct = model.backend.run(pte.x[:7])[0]  # the backend alone chunks too
    np.testing.assert_allclose(direct, got[:7], rtol=0, atol=1e-6)


def test_int8_agrees_with_pytorch(pte):
    got = _predictor(pte.int8).run(pte.x)[HEAD]
    agree = float((got.argmax(1) == pte.ref.argmax(1)).mean())
    sqnr = 10 * np.log10((pte.ref ** 2).sum() / ((got - pte.ref) ** 2).sum())
    print(f"\nint8 .pte: top-1 agreement {agree:.3f}, SQNR {sqnr:.1f} dB, export {pte.seconds['int8']:.1f}s, "
          f"{pte.int8.stat().st_size / 1e3:.0f} kB vs fp32 {pte.fp32.stat().st_size / 1e3:.0f} kB")
    assert agree >= 0.8 and sqnr > 10
    assert pte.int8.stat().st_size < pte.fp32.stat().st_size


def test_card_travels_inside_the_file(pte):
    from edgekit.runtime.metadata import read_card

    assert not list(pte.dir.glob("*.card.json"))  # embedded, no sidecar
    for path, precision in ((pte.fp32, "fp32"), (pte.int8, "int8")):
        card = read_card(path)
        assert card.head_names == [HEAD] and card.heads[0].classes == pte.card.heads[0].classes
        assert card.input.size == [32, 32] and card.input.mean == pte.card.input.mean
        prov = card.provenance
        assert prov["format"] == "executorch" and prov["precision"] == precision and prov["batch"] == 4
        assert prov["delegate"] == "xnnpack" and prov["executorch"]
        delegation = prov["delegation"]
        assert delegation["delegated_ops"] > 0 and delegation["subgraphs"] >= 1
        assert delegation["non_delegated_ops"] == sum(delegation["non_delegated"].values())
        print(f"\n{path.name}: {json.dumps(delegation)}")
    assert read_card(pte.int8).provenance["quantization"]["calibration_images"] == 64


def test_residency_from_the_program_and_the_card(pte, tmp_path):
    """What ran: partitions and portable-kernel ops from the program; op counts from the card when there is one."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.benchmarks.report import residency_cell
    from edgekit.runtime.residency import pte_residency

    ours = pte_residency(pte.int8)
    lowered = json.loads(json.dumps(_predictor(pte.int8).card.provenance["delegation"]))
    assert ours["delegate"] == "XNNPACK" and ours["partitions"] >= 1
    assert ours["delegated"] == lowered["delegated_ops"] and ours["ops"] >= ours["delegated"] > 0.9 * ours["ops"]
    assert residency_cell(ours) == f"XNNPACK {ours['delegated']}/{ours['ops']}"

    class Foreign(torch.nn.Module):  # a .pte edgekit did not write: no card; cumsum has no XNNPACK kernel
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.cumsum(torch.nn.functional.relu(self.fc(x)), dim=1)

    program = torch.export.export(Foreign(), (torch.ones(4, 4),))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    (tmp_path / "foreign.pte").write_bytes(buffer)
    theirs = pte_residency(tmp_path / "foreign.pte")
    assert theirs["ops"] is None and theirs["partitions"] == 1 and theirs["delegate"] == "XNNPACK"
    assert theirs["not_delegated"] == {"cumsum.out": 1}  # linear + relu went to XNNPACK
    assert residency_cell(theirs) == "XNNPACK x1, 1 portable"


def test_a_file_that_is_not_a_program_is_refused(pte, tmp_path):
    from edgekit.runtime.backends import ModelFileError
    from edgekit.runtime.pte import ExecuTorchBackend

    bad = tmp_path / "model.pte"
    bad.write_bytes(b"not a program")
    with pytest.raises(ModelFileError, match="not a valid ExecuTorch program"):
        ExecuTorchBackend(bad)


def test_missing_executorch_names_the_extra(monkeypatch, tmp_path):
    """Runs without executorch too: the export, the backend and the card reader all say what to install."""
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)  # `import executorch...` now fails
    pytest.importorskip("torch")
    from edgekit.export.executorch import check_available, export_executorch
    from edgekit.runtime.metadata import read_card
    from edgekit.runtime.pte import ExecuTorchBackend

    extra = r"pip install 'edgekit\[executorch\]'"
    with pytest.raises(DependencyError, match=r"the executorch target needs the executorch package: " + extra):
        check_available()
    with pytest.raises(DependencyError, match=extra):
        export_executorch(None, None, tmp_path / "m.pte", None)
    path = tmp_path / "model.pte"
    path.write_bytes(b"\0" * 16)
    for call in (lambda: ExecuTorchBackend(path), lambda: read_card(path)):
        with pytest.raises(DependencyError, match=extra):
            call()
    assert not (Path(tmp_path) / "m.pte").exists()
