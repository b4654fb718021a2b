"""`edgekit bench` on files edgekit did not write: measured with stated assumptions, accuracy with --labels."""

import json

import numpy as np


def _bench_dataset(where):
    """The validation images bench prepared under ``where`` (RGB uint8 at the input size) and the labels of
    ``--labels``' head (the digits' own)."""
    (images,) = [p for p in where.rglob("*.npy") if p.with_suffix(".labels.json").is_file()]
    return np.load(images), json.loads(images.with_suffix(".labels.json").read_text())["logits"]


def _as_assumed(images):
    """NCHW float32, normalized with the ImageNet mean/std bench assumes for a card-less file."""
    from edgekit.runtime.foreign import IMAGENET_MEAN, IMAGENET_STD

    return ((images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(0, 3, 1, 2).astype(
        np.float32)


def _top1_by_hand(onnx_path, where):
    """The digits' validation top-1 of a card-less file, counted here: the images bench prepared, normalized
    as it assumed, a bare onnxruntime session, and the labels' class names."""
    import onnxruntime as ort

    images, truth = _bench_dataset(where)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    pred = session.run(None, {session.get_inputs()[0].name: _as_assumed(images)})[0].argmax(1)
    pairs = [(str(p), t) for p, t in zip(pred, truth, strict=True) if t is not None]
    assert len(pairs) == 360
    return sum(p == t for p, t in pairs) / len(pairs)


def test_bench_card_less_files_with_labels_and_shapes(foreign_models, tmp_path, capsys):
    from edgekit.cli import main

    labels = tmp_path / "digits.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    out = tmp_path / "bench"
    assert main(["bench", str(foreign_models / "cls.onnx"), str(foreign_models / "two.onnx"), "--batch", "2",
                 "--seconds", "0.05", "--backend", "ort", "--labels", str(labels), "--data", "digits",
                 "--shape", "image:1,3,16,16", "--threads", "1", "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "bench.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"cls", "two"} and not any("error" in r for r in rows.values())
    cls, two = rows["cls"], rows["two"]
    assert cls["accuracy"]["logits"] == _top1_by_hand(foreign_models / "cls.onnx", tmp_path)  # on the digits' head
    assert cls["assumed"]["normalization"] == "ImageNet" and "classes are indices" not in json.dumps(cls["assumed"])
    assert two["assumed"]["inputs"]["image"] == "float32[2, 3, 16, 16]" and "accuracy" not in two
    assert any("no single image input" in n for n in data["notes"])  # why two has no accuracy
    md = (out / "bench.md").read_text()
    assert "cls.onnx carries no edgekit card; assumed layout=NCHW" in md and "CPU " in md
    capsys.readouterr()


def test_bad_card_less_files_fail_in_one_line(foreign_models, tmp_path, capsys):
    from edgekit.cli import main

    for args, message in (([str(foreign_models / "strings.onnx")], "input 'text' is tensor(string)"),
                          ([str(foreign_models / "two.onnx")], "give its shape, e.g. --shape image:1,3,"),
                          ([str(foreign_models / "cls.onnx"), "--layout", "hwc"], "--layout must be nchw or nhwc"),
                          ([str(foreign_models / "cls.onnx"), "--shape", "1,x"], "--shape must be [NAME:]D0,D1")):
        assert main(["bench", *args, "--data", "none", "--out", str(tmp_path / "b"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and message in err


def _centroid_onnx(images, truth, path):
    """A card-less ONNX file that tells the digits apart (nearest class centroid as one MatMul + Add over the
    ImageNet-normalized NCHW input): the random ``cls.onnx`` answers one class for every image, so its top-1
    (one class's share) cannot tell a right count from a wrong one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = _as_assumed(images).reshape(len(images), -1).astype(np.float64)
    c = np.stack([x[[t == str(k) for t in truth]].mean(0) for k in range(10)])  # argmin |x-c|^2 = argmax x.c - |c|^2/2
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["logits"])], "centroids",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(c.T.astype(np.float32), "w"),
         numpy_helper.from_array((-0.5 * (c ** 2).sum(1)).astype(np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_bench_counts_the_top1_of_a_card_less_file_that_discriminates(foreign_models, tmp_path, capsys):
    from edgekit.cli import main

    labels = tmp_path / "digits.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    args = ["--batch", "1", "--seconds", "0.05", "--backend", "ort", "--labels", str(labels), "--data", "digits",
            "--shape", "image:1,3,16,16", "--threads", "1", "--quiet"]
    assert main(["bench", str(foreign_models / "cls.onnx"), *args, "--out", str(tmp_path / "b0")]) == 0
    model = _centroid_onnx(*_bench_dataset(tmp_path / "b0"), tmp_path / "centroids.onnx")
    assert main(["bench", str(model), *args, "--out", str(tmp_path / "b1")]) == 0
    (row,) = json.loads((tmp_path / "b1" / "bench.json").read_text())["rows"]
    by_hand = _top1_by_hand(model, tmp_path / "b1")
    assert by_hand > 0.5 and row["accuracy"]["logits"] == by_hand
    capsys.readouterr()
