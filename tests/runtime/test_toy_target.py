"""A target added at test time is picked up by the rest of edgekit with no other edit (issue 30 §2).

The toy target is what a new target brings: one row of the format table (registered here instead of
written into ``edgekit/formats.py``), one export module (this file: ``build`` and ``rewrite_card``) and
one runtime backend (:class:`ToyBackend`: a linear model kept in an ``.npz`` with its card). Loading,
predicting, verifying against a reference, ``edgekit check``, the bench worker, residency, a card-less
copy and the export's card rewrite then find it through the table and the backend's own methods.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit import formats
from edgekit.card import HeadSpec, InputSpec, ModelCard
from edgekit.runtime.backend import Backend, TensorInfo, check_threads

SIZE, CLASSES = 8, ["cat", "dog", "other"]


# -- the toy export module: this file (Format.exporter) -------------------------------------------------

def write_toy(weights: np.ndarray, bias: np.ndarray, card: ModelCard | None, path: Path) -> Path:
    """The toy format: an ``.npz`` (under the target's own suffix) with the weights and the card's JSON."""
    arrays = {"w": weights.astype(np.float32), "b": bias.astype(np.float32)}
    if card is not None:
        arrays["card"] = np.asarray(json.dumps(card.to_dict()))
    with open(path, "wb") as fh:  # np.savez would append .npz to the name
        np.savez(fh, **arrays)
    return path


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """The export step every target module has (``job.module``: here the toy's (weights, bias))."""
    weights, bias = job.module
    return write_toy(weights, bias, card, Path(path))


def rewrite_card(path: str | Path, card: ModelCard) -> Path:
    with np.load(path) as z:
        weights, bias = z["w"], z["b"]
    return write_toy(weights, bias, card, Path(path))


# -- the toy runtime backend ------------------------------------------------------------------------------

class ToyBackend(Backend):
    name = "toy-numpy"
    library = "numpy"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        with np.load(path) as z:
            self.w, self.b = z["w"], z["b"]
        self.threads, self.output_names = check_threads(threads), ["kind"]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [(x.reshape(len(x), -1) @ self.w.T + self.b).astype(np.float32)]

    @classmethod
    def card_text(cls, path: Path, session=None) -> str | None:
        with np.load(path) as z:
            return str(z["card"]) if "card" in z.files else None

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        return [TensorInfo("pixels", np.dtype(np.float32), (None, 3, SIZE, SIZE))]

    def output_tensors(self) -> list[TensorInfo]:
        return [TensorInfo("kind", np.dtype(np.float32), (None, len(self.b)))]

    def raw_runner(self, feed: dict[str, np.ndarray]):
        return lambda: self.run(feed["pixels"])

    def residency(self, path: Path, feed: dict[str, np.ndarray]) -> dict:
        return {"device": "cpu", "ops": {"MatMul": 1, "Add": 1}}


TOY = formats.Format("toy", ".toy", "toy", ToyBackend.name, ("fp32",), ("numpy",), ("numpy",), "runtime", ("cpu",),
                     default=False, backend=f"{__name__}:ToyBackend", exporter=__name__)


@pytest.fixture
def toy(tmp_path):
    """The row registered, and an exported toy file with its card; the row is removed afterwards."""
    formats.register(TOY)
    try:
        rng = np.random.default_rng(0)
        weights, bias = rng.standard_normal((len(CLASSES), 3 * SIZE * SIZE)) * 0.1, rng.standard_normal(3)
        card = ModelCard(name="toy", arch="linear", heads=[HeadSpec("kind", "classification", CLASSES)],
                         input=InputSpec(size=[SIZE, SIZE], mean=[0.5] * 3, std=[0.25] * 3),
                         provenance={"format": "toy", "precision": "fp32"})
        steps = __import__(formats.FORMATS["toy"].exporter, fromlist=["build"])
        path = steps.build(SimpleNamespace(module=(weights, bias)), "fp32", card, tmp_path / TOY.file("fp32"))
        yield SimpleNamespace(path=path, card=card, w=weights.astype(np.float32), b=bias.astype(np.float32))
    finally:
        formats.unregister("toy")


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]


def test_load_and_predict_find_the_toy_backend_and_its_card(toy):
    from edgekit.runtime import load

    model = load(toy.path, threads=1)
    assert type(model.backend).__name__ == "ToyBackend" and model.card.head_names == ["kind"]
    x = model.preprocess(_images(4), color="RGB")
    np.testing.assert_allclose(model.run(x)["kind"], x.reshape(4, -1) @ toy.w.T + toy.b, rtol=1e-5, atol=1e-5)
    top = model.predict(_images(1), color="RGB")[0]["kind"]
    assert top["label"] == CLASSES[int(np.argmax(model.run(x[:1])["kind"]))]


def test_verify_judges_a_toy_file_and_fails_a_wrong_one(toy):
    from edgekit.export.verify import verify_file

    x = ((np.stack(_images(6)).astype(np.float32) / 255 - 0.5) / 0.25).transpose(0, 3, 1, 2)
    reference = {"kind": x.reshape(6, -1) @ toy.w.T + toy.b}
    entry = verify_file(toy.path, reference, x, None, toy.card)
    assert entry["verdict"] == "passed" and entry["precision_ran"] == "fp32", entry
    write_toy(toy.w * 1.5, toy.b, toy.card, toy.path)  # a file that no longer gives the answers
    assert verify_file(toy.path, reference, x, None, toy.card)["verdict"] == "failed"


def test_check_bench_worker_and_residency_pick_it_up(toy):
    from edgekit.benchmarks.worker import run as bench
    from edgekit.recipes.check import check
    from edgekit.runtime.backends import open_backend
    from edgekit.runtime.residency import what_ran

    gates = check(toy.path, max_latency_ms=10_000, max_size_mb=1)
    assert [g["passed"] for g in gates] == [True, True], gates
    assert what_ran(toy.path, open_backend(toy.path, threads=1))["residency"] == {"device": "cpu",
                                                                                 "ops": {"MatMul": 1, "Add": 1}}
    row = bench({"path": str(toy.path), "batch": 2, "threads": 1, "min_runs": 3, "min_seconds": 0.0, "warmup": 1})
    assert "error" not in row, row
    assert row["residency"]["ops"] == {"MatMul": 1, "Add": 1} and row["quant"] is None and row["p50_ms"] > 0


def test_a_toy_file_without_a_card_is_measured_and_predicted_from_its_graph(toy, tmp_path):
    from edgekit.benchmarks.worker import run as bench
    from edgekit.runtime import load

    bare = write_toy(toy.w, toy.b, None, tmp_path / "bare.toy")
    model = load(bare, threads=1, assume={"labels": None})
    assert model.card.input.size == [SIZE, SIZE] and model.card.head("kind").classes == ["0", "1", "2"]
    assert model.assumed["layout"] == "NCHW"
    row = bench({"path": str(bare), "batch": 3, "threads": 1, "raw": True, "min_runs": 3, "min_seconds": 0.0,
                 "warmup": 1})
    assert row["assumed"]["inputs"] == {"pixels": "float32[3, 3, 8, 8]"}, row


def test_export_rewrites_the_toy_card_through_the_table(toy, tmp_path):
    from edgekit.export.certify import _certify
    from edgekit.export.report import Artifact
    from edgekit.runtime.metadata import read_card

    copy = tmp_path / "certified.toy"
    shutil.copy(toy.path, copy)
    _certify(Artifact(copy, "toy", "fp32", 0.0), {"verdict": "passed", "passed": True, "kept": True})
    assert read_card(copy).provenance["gate"]["verdict"] == "passed"
