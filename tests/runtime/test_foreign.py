"""Files edgekit did not write: inputs from the graph's signature, a card from flags, assumptions said out loud."""

import json
import re

import cv2
import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.runtime import load
from edgekit.runtime.backends import open_backend
from edgekit.runtime.foreign import (
    Assume,
    NotAnImageModel,
    UnsupportedModelError,
    input_shapes,
    raw_runner,
    signature,
    synthesize,
)
from edgekit.runtime.metadata import NoCardError


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "img.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    return path


def test_signature_shapes_and_synthesized_inputs(foreign_models):
    backend = open_backend(foreign_models / "two.onnx", threads=1)
    inputs = signature(backend)
    assert [(t.name, t.dtype.name, t.shape) for t in inputs] == [
        ("image", "float32", (None, 3, None, None)), ("extra", "float32", (None, 2))]
    with pytest.raises(ConfigError, match=re.escape("shapes={'image': [3, 3, 224, 224]}")):  # dynamic H, W need a shape
        input_shapes(inputs, 3)
    shapes = input_shapes(inputs, 3, {"image": [1, 3, 20, 24]})  # a dynamic axis 0 is the batch
    assert shapes == {"image": (3, 3, 20, 24), "extra": (3, 2)}
    assert input_shapes(inputs, 2, {"": [1, 3, 8, 8]})["image"] == (2, 3, 8, 8)  # unnamed: the first input
    for bad, match in (({"nope": [1]}, "no such input"), ({"image": [1, 3, 16]}, "has 3 axes"),
                       ({"image": [1, 4, 16, 16]}, "axis 1 of input 'image' is fixed at 3")):
        with pytest.raises(ConfigError, match=match):
            input_shapes(inputs, 1, bad)
    feed = synthesize(inputs, shapes)
    assert feed["image"].dtype == np.float32 and feed["extra"].shape == (3, 2)
    logits, score = raw_runner(backend, feed)()
    assert logits.shape == (3, 5) and score.shape == (3, 1)

    tfl = open_backend(foreign_models / "two.int8.tflite", threads=1)
    (t,) = signature(tfl)
    assert t.dtype == np.int8 and t.quant is not None and t.shape == (1, 3, 16, 16)
    outs = raw_runner(tfl, synthesize([t], input_shapes([t], 4)))()  # a fixed batch stays fixed
    assert len(outs) == 2 and outs[0].shape[0] == 1


def test_a_card_less_file_is_refused_unless_assumptions_are_allowed(foreign_models, image, tmp_path):
    with pytest.raises(NoCardError, match="assume="):
        load(foreign_models / "cls.onnx")
    model = load(foreign_models / "cls.onnx", assume={})
    assert model.assumed["normalization"] == "ImageNet" and model.assumed["layout"] == "NCHW"
    assert model.assumed["mean"] == [0.485, 0.456, 0.406] and "classes are indices" in model.assumed["heads"]["logits"]
    assert model.predict(str(image))[0]["logits"]["label"] in [str(i) for i in range(10)]

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n\n")
    given = load(foreign_models / "cls.onnx", assume=Assume(mean=[0.5] * 3, std=[0.5] * 3, bgr=True,
                                                            labels=str(labels), layout="nchw"))
    assert not {"mean", "std", "color", "layout", "normalization"} & set(given.assumed)
    assert given.card.input.color == "BGR" and given.card.input.mean == [0.5] * 3
    assert given.predict(str(image))[0]["logits"]["label"].startswith("class ")


def test_integer_input_and_two_outputs(foreign_models, image):
    model = load(foreign_models / "two.int8.tflite", assume={})
    assert model.assumed["normalization"] == "raw pixel codes (integer input)"
    assert model.card.input.dtype == "int8" and model.card.input.quant is not None
    pred = model.predict(str(image))[0]
    assert len(pred) == 2 and all("label" in p for p in pred.values())
    assert load(foreign_models / "cls.tflite", assume={}).predict(str(image))[0]


def test_bad_files_and_flags(foreign_models, tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"input 'text' is tensor\(string\)"):
        load(foreign_models / "strings.onnx", assume={})
    with pytest.raises(NotAnImageModel, match="takes 2 inputs"):
        load(foreign_models / "two.onnx", assume={})
    with pytest.raises(ConfigError, match="layout must be nchw or nhwc"):
        load(foreign_models / "cls.onnx", assume={"layout": "chw"})
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ConfigError, match="has 3 names but output 'logits' has 10 values"):
        load(foreign_models / "cls.onnx", assume={"labels": str(labels)})
    with pytest.raises(ConfigError, match="fixed at 16x16"):
        load(foreign_models / "cls.onnx", assume={"imgsz": 32})


def test_cli_predict_states_assumptions_and_fails_in_one_line(foreign_models, image, tmp_path, capsys):
    from edgekit.cli import main

    assert main(["predict", str(foreign_models / "cls.onnx"), str(image), "--json", "--topk", "2",
                 "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)[0]
    assert len(result["predictions"]["logits"]["top"]) == 2 and "mean" not in result["assumed"]
    assert "carries no edgekit card; assumed layout=NCHW" in captured.err
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    for args, message in ((["--layout", "chw"], "--layout must be nchw or nhwc"),
                          (["--labels", str(labels)], "has 3 names but output 'logits' has 10 values"),
                          (["--mean", "0.5,0.5"], "--mean must be 3 comma-separated numbers")):
        assert main(["predict", str(foreign_models / "cls.onnx"), str(image), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    assert main(["predict", str(foreign_models / "strings.onnx"), str(image)]) == 2
    assert "tensor(string)" in capsys.readouterr().err
