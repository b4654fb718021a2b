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
    from PIL import Image

    from edgekit.train.data import eval_transform

    for name in ("model.int8.onnx", "model.int8.tflite"):  # certified by the INT8 gate on training's tensors:
        assert exported.by_file(name)["passed"], name  # from files, the same answers as from those tensors
        model = load(exported.out_dir / name)
        got = [p["digit"]["label"] for p in model.predict(files)]
        x = np.stack([eval_transform(model.card.input)(Image.open(f)).numpy() for f in files])
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if model.card.input.layout == "NHWC" else x
        assert got == [p["digit"]["label"] for p in model.decode(model.run(x))], name


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


def test_eval_transform_is_the_runtime_preprocessing():
    """Training's eval transform calls the runtime's preprocessing: the same tensor, bit for bit, for images
    of any size (resized and cropped), PIL or numpy, RGB or the runtime's BGR frames."""
    from PIL import Image

    from edgekit.card import InputSpec
    from edgekit.runtime.preprocess import preprocess
    from edgekit.train.data import eval_transform

    rng = np.random.default_rng(0)
    for interpolation, crop_pct, (h, w) in (("bilinear", 1.0, (32, 32)), ("bilinear", 0.875, (96, 128)),
                                            ("bicubic", 0.875, (300, 41)), ("bicubic", 0.95, (20, 25))):
        spec = InputSpec(size=[32, 32], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], crop_pct=crop_pct,
                         interpolation=interpolation)
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        ours = preprocess([img], spec, color="RGB")[0]
        tf = eval_transform(spec)
        assert np.array_equal(tf(Image.fromarray(img)).numpy(), ours)
        assert np.array_equal(tf(img).numpy(), ours)  # an RGB array
        assert np.array_equal(preprocess([img[:, :, ::-1].copy()], spec)[0], ours)  # OpenCV's BGR frames


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
