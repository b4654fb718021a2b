"""`edgekit bench` on files edgekit did not write: measured with stated assumptions, accuracy with --labels."""

import json


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
    assert 0 <= cls["accuracy"]["logits"] <= 1  # the --labels head scored on the digits' own head
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
