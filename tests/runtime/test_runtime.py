import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import CardError
from edgekit.runtime import InputError, ModelFileError, load


def test_predict_gives_pytorch_labels_on_val_images(exported, trained_run, val_pngs):
    from edgekit.train.torch_backend import load as load_checkpoint_model

    torch_model = load_checkpoint_model(trained_run.run_dir / "best.pt")
    files = sorted(val_pngs.iterdir())
    ref = [p["digit"]["label"] for p in torch_model.predict(files)]
    for name in ("model.onnx", "model.tflite"):
        got = [p["digit"]["label"] for p in load(exported.out_dir / name).predict(files)]
        assert got == ref, name  # FP32: identical labels
    from edgekit.export.gates import GATES

    for name in ("model.int8.onnx", "model.int8.tflite"):  # certified by the INT8 gate: it holds from files too
        got = [p["digit"]["label"] for p in load(exported.out_dir / name).predict(files)]
        assert np.mean([a == b for a, b in zip(got, ref, strict=True)]) >= GATES["int8"].min_agreement, name


def test_runtime_never_imports_torch(exported, val_pngs):
    code = f"""
import sys
from edgekit.runtime import load
for name in ("model.onnx", "model.int8.tflite", "model.fp16.onnx"):
    m = load(r"{exported.out_dir}" + "/" + name, threads=1)
    out = m.predict(sorted(__import__("pathlib").Path(r"{val_pngs}").iterdir()))
    assert len(out) > 0
sys.exit(3 if "torch" in sys.modules else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_decoded_outputs(exported, val_pngs):
    model = load(exported.out_dir / "model.onnx")
    pred = model.predict(sorted(val_pngs.iterdir())[0], topk=3)[0]["digit"]
    assert len(pred["top"]) == 3 and pred["top"][0][0] == pred["label"]
    assert 0 < pred["score"] <= 1 and pred["top"][0][1] >= pred["top"][1][1]
    assert sum(p for _, p in model.predict(sorted(val_pngs.iterdir())[0], topk=10)[0]["digit"]["top"]) == \
        pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_raise_and_the_predictor_survives(exported, tmp_path):
    model = load(exported.out_dir / "model.tflite")
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(InputError, match="uint8"):
        model.predict(frame.astype(np.float32))
    with pytest.raises(InputError, match="HxWx3"):
        model.predict(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError, match=r"shape \[N, 16, 16, 3\] \(NHWC\) of float32, got float32 \(1, 3"):
        model.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="of float32, got int8"):
        model.run(np.zeros((1, 16, 16, 3), np.int8))
    int8 = load(exported.out_dir / "model.int8.tflite")  # takes int8 tensors: preprocess gives them
    assert int8.preprocess(frame).dtype == np.int8
    assert int8.run(int8.preprocess(frame))["digit"].dtype == np.float32
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="bad.png"):
        model.predict(tmp_path / "bad.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg"):
        model.predict(str(tmp_path / "empty.jpg"))
    with pytest.raises(InputError):
        model.predict([])
    assert model.predict(frame)[0]["digit"]["label"] in [str(i) for i in range(10)]  # still works


def test_files_that_are_not_models(tmp_path, exported):
    (tmp_path / "a.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        load(tmp_path / "a.onnx")
    (tmp_path / "a.tflite").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a valid TFLite model"):
        load(tmp_path / "a.tflite")
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(ModelFileError, match="unknown model format"):
        load(tmp_path / "x.h5")
    with pytest.raises(ModelFileError, match="not found"):
        load(tmp_path / "missing.onnx")
    import onnx

    proto = onnx.load(str(exported.out_dir / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "nocard.onnx"))
    with pytest.raises(CardError, match="no edgekit model card"):
        load(tmp_path / "nocard.onnx")
    (tmp_path / "nocard.onnx.card.json").write_text(load(exported.out_dir / "model.onnx").card.to_json())
    assert load(tmp_path / "nocard.onnx").card.arch == "test_efficientnet"  # a sidecar card for foreign files


def test_preprocessing_matches_timm_eval_transform():
    from PIL import Image

    from edgekit.card import InputSpec
    from edgekit.runtime.preprocess import preprocess
    from edgekit.train.data import eval_transform

    spec = InputSpec(size=[32, 32], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], crop_pct=1.0)
    rng = np.random.default_rng(0)
    same = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ours = preprocess([same], spec, color="RGB")[0]
    theirs = eval_transform(spec)(Image.fromarray(same)).numpy()
    assert np.array_equal(ours, theirs)  # no resize: bit-identical
    bgr = preprocess([same[:, :, ::-1].copy()], spec)[0]
    assert np.array_equal(bgr, ours)  # OpenCV's BGR frames are converted
    smooth = np.clip(np.add.outer(np.arange(96), np.arange(128))[:, :, None] + np.zeros(3), 0, 255).astype(np.uint8)
    spec.crop_pct = 0.875
    ours = preprocess([smooth], spec, color="RGB")[0]
    theirs = eval_transform(spec)(Image.fromarray(smooth)).numpy()
    assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 0.05  # resized: OpenCV vs PIL


def test_decode_multilabel_and_regression():
    from edgekit.card import HeadSpec, InputSpec, ModelCard
    from edgekit.runtime.predictor import Predictor

    card = ModelCard(name="m", arch="a", input=InputSpec(size=[4, 4], mean=[0] * 3, std=[1] * 3),
                     heads=[HeadSpec("tags", "multilabel", ["x", "y"], threshold=0.6), HeadSpec("age", "regression")])

    class Fake:
        name, device, batch = "fake", "cpu", None

        def order_outputs(self, heads):
            pass

    pred = Predictor(Fake(), card, __import__("pathlib").Path("m.onnx"))
    out = pred.decode({"tags": np.array([[2.0, 0.0]]), "age": np.array([[31.5]])})[0]
    assert out["tags"]["labels"] == ["x"] and out["tags"]["scores"]["y"] == pytest.approx(0.5)
    assert out["age"] == {"value": 31.5}
