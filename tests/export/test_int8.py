"""INT8 as a policy of the export (export/int8.py): --max-drop and the float-layer search give INT8 files only when
each backend's file passes its gate through its own runtime, each file judged once, in one parity.json."""

import json

import pytest

from edgekit.cli import main
from edgekit.export.gates import GATES


def test_gate_met_records_sensitivity_and_the_measured_drop(trained_run, tmp_path):
    from edgekit.export.quantize import quantize_checkpoint

    summary = quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=16,
                                  verbose=False)  # the default gate: 1 point
    saved = json.loads((tmp_path / "quant.json").read_text())
    assert saved["gate"]["int8_gate"] == GATES["int8"].to_dict() and saved["gate"]["failed"] == {}
    layers = [r["layer"] for r in saved["sensitivity"]]
    assert "heads.digit" in layers and all(r["sqnr_db"] is None or r["sqnr_db"] > -50 for r in saved["sensitivity"])
    assert (tmp_path / "sensitivity.png").exists() and (tmp_path / "model.int8.onnx").exists()
    parity = {e["file"]: e for e in json.loads((tmp_path / "parity.json").read_text())["artifacts"]}
    head = parity["model.int8.onnx"]["heads"]["digit"]
    measured = (head["reference_accuracy"] - head["accuracy"]) * 100
    trail = saved["gate"]["trail"]["onnx"]
    assert trail[-1]["passed"] and trail[-1]["float_layers"] == saved["gate"]["float_layers"]["onnx"]
    assert parity["model.int8.onnx"]["passed"] and measured <= GATES["int8"].max_drop_points
    drop = summary["backends"]["onnxruntime"]["heads"]["digit"]["drop_points"]
    fp32 = parity["model.onnx"]["heads"]["digit"]["accuracy"]
    assert drop == pytest.approx((fp32 - head["accuracy"]) * 100)


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_gate_that_cannot_be_met_fails_on_the_measured_drop(trained_run, tmp_path, monkeypatch, capsys,
                                                           outlier_checkpoint, target):
    """The float-layer search is the same for every INT8 target (an OpenVINO IR's float layers are NNCF's
    ignored scope) and says when nothing passes."""
    from edgekit import formats
    from edgekit.export import int8

    if target == "openvino":
        pytest.importorskip("nncf")
    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")  # INT8 collapses
    monkeypatch.setattr(int8, "candidate_layers", lambda trained: ["heads.digit"])  # not enough
    steps, quantizers = formats.FORMATS[target].steps(), []  # per INT8 attempt: the quantizing ops in its file
    build = steps.build
    monkeypatch.setattr(steps, "build", lambda job, precision, card, path: _counted(
        build(job, precision, card, path), precision, quantizers))
    argv = ["quantize", str(ckpt), "--target", target, "--calib", "16", "--max-drop", "0.5", "--float-search",
            "block", "--out", str(tmp_path / "q"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: INT8 cannot pass its gate on {target}") and "\n" not in err
    assert f"Tried: {target}: none -> drop" in err
    assert not (tmp_path / "q" / formats.FORMATS[target].file("int8")).exists()
    trail = json.loads((tmp_path / "q" / "quant.json").read_text())["gate"]["trail"][target]
    assert [t["float_layers"] for t in trail] == [[], ["heads.digit"]]  # every candidate tried, most sensitive first
    assert all(not t["passed"] and t["drop_points"] > 30 for t in trail)  # measured through the target's runtime
    assert len(quantizers) == 2 and quantizers[1] < quantizers[0], quantizers  # the float block is in the file


def _counted(path, precision, counts):
    """``path``, after counting its quantizing ops into ``counts`` (INT8 files: ONNX Q/DQ and QLinear/Integer
    nodes, OpenVINO FakeQuantize)."""
    if precision == "int8":
        if str(path).endswith(".onnx"):
            import onnx

            counts.append(sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
                              or n.op_type.endswith("Integer") for n in onnx.load(str(path)).graph.node))
        else:
            import openvino as ov

            counts.append(sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(path)).get_ops()))
    return path


def test_max_drop_must_be_sensible(trained_run, tmp_path, capsys):
    ckpt = str(trained_run.run_dir / "best.pt")
    assert main(["quantize", ckpt, "--max-drop", "1", "--skip-layers", "heads.digit", "--out", str(tmp_path)]) == 2
    assert "leave --skip-layers at auto" in capsys.readouterr().err
    assert main(["export", ckpt, "--max-drop", "150", "--target", "onnx", "--out", str(tmp_path)]) == 2
    assert "--max-drop is in accuracy points (0-100), got 150" in capsys.readouterr().err


@pytest.mark.parametrize("drop", [-1.0])
def test_negative_drop_is_refused(trained_run, tmp_path, drop):
    from edgekit.errors import ConfigError
    from edgekit.export.quantize import quantize_checkpoint

    with pytest.raises(ConfigError, match=r"in accuracy points \(0-100\)"):
        quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=8,
                            max_drop=drop, verbose=False)


def test_export_int8_max_drop_judges_each_file_once_in_one_parity_json(trained_run, tmp_path, monkeypatch):
    """`edgekit export --int8 --max-drop` is one export: the float-layer search's kept attempt is the file that
    ships, with the verdict it got during the search (no second verification of any file), and one parity.json
    holds the FP32 and INT8 entries and the search's trail."""
    from edgekit.export import verify

    judged: list[str] = []
    real = verify.verify_file

    def counted(path, *a, **k):
        judged.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(verify, "verify_file", counted)
    out = tmp_path / "e"
    argv = ["export", str(trained_run.run_dir / "best.pt"), "--target", "onnx", "--int8", "--max-drop", "1",
            "--calib", "16", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    parity = json.loads((out / "parity.json").read_text())
    entries = {e["file"]: e for e in parity["artifacts"]}
    assert set(entries) == {"model.onnx", "model.int8.onnx"} and all(e["passed"] for e in entries.values())
    search = parity["int8_search"]
    assert search["trail"]["onnx"][-1]["passed"] and search["attempts"] == len(search["trail"]["onnx"])
    assert len(judged) == 1 + search["attempts"], judged  # FP32 once, each attempt once, the kept one not again
    assert entries["model.int8.onnx"]["float_layers"] == search["float_layers"]["onnx"]
    kept = [p for p in judged if p.endswith("model.int8.onnx")]
    assert len(kept) == len(search["trail"]["onnx"]) and ".int8-search" in kept[-1]  # judged where it was made
    assert not (out / ".int8-search").exists() and (out / "model.int8.onnx").exists()
    assert "end_to_end" in entries["model.int8.onnx"]  # the kept file's raw-file check, added once
    # blocks are ranked (an ONNX INT8 file per block) only when the fully INT8 file misses its gate
    assert bool(search["sensitivity"]) == (not search["trail"]["onnx"][0]["passed"])


def _layer_search(ckpt, out, **kw):
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.int8 import Int8

    policy = Int8(float_layers="auto", calib_images=16, search_by="layer", **kw)
    return export_checkpoint(ckpt, ["onnx"], out, int8=policy, verbose=False)


def test_layer_search_puts_the_outlier_layers_in_float(trained_run, tmp_path, outlier_checkpoint):
    """The per-layer search starts from the layer diff ranks worst in the failed fully INT8 file (the BatchNorm whose
    channel is pinned at 3e4), then the layers that quantize that tensor again (the pool, the head reading it), and
    passes with a few of the model's conv/linear layers in float."""
    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")
    report = _layer_search(ckpt, tmp_path / "e", max_float=0.25)
    search = report.int8_search
    trail, record = search["trail"]["onnx"], search["search"]["onnx"]
    assert not trail[0]["passed"] and trail[0]["drop_points"] > 30
    assert trail[1]["layers"] == ["backbone.bn2.act"] and trail[1]["float_layers"] == ["backbone.bn2"]
    floats = search["float_layers"]["onnx"]
    assert trail[-1]["passed"] and floats == trail[-1]["float_layers"]
    assert "backbone.bn2" in floats and any(f.startswith("heads.") for f in floats)
    assert record["by"] == "layer" and record["float_convs"] <= record["max_float_convs"] == 4
    assert record["float_convs"] < record["conv_linear_layers"] / 4
    entry = {e["file"]: e for e in report.parity}["model.int8.onnx"]
    assert entry["passed"] and entry["float_layers"] == floats
    assert not search["sensitivity"]  # no block was exported alone


def test_layer_search_without_diffs_ranking_fails_naming_the_layers(trained_run, tmp_path, outlier_checkpoint,
                                                                   monkeypatch):
    """The ranking is what finds the layers: ranked the other way round (the layers whose SQNR falls least first),
    the same cap is spent on harmless layers and no float set within it passes; the record names the layers in the
    way, and the search goes on by block (as before the per-layer search)."""
    from edgekit.export import float_layers

    real = float_layers.rank
    monkeypatch.setattr(float_layers, "rank", lambda *a, **k: real(*a, **k)[::-1])
    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")
    search = _layer_search(ckpt, tmp_path / "e", max_float=0.25).int8_search
    record = search["search"]["onnx"]
    assert record["capped"] and record["then"] == "block"
    assert "of 18 conv/linear layers in float (at most 4: 25%)" in record["failed"]
    assert "the layers keeping it from passing, worst first:" in record["failed"] and "\n" not in record["failed"]
    assert search["sensitivity"] and all("layers" not in t for t in search["trail"]["onnx"][-1:])


def test_layer_search_cap_and_choice_are_checked():
    from edgekit.errors import ConfigError
    from edgekit.export.int8 import Int8

    with pytest.raises(ConfigError, match="must be layer or block"):
        Int8(float_layers="auto", search_by="stage")
    with pytest.raises(ConfigError, match=r"share of the layers \(0-1\]"):
        Int8(float_layers="auto", max_float=0)


def test_the_search_is_by_block_unless_asked_per_layer():
    """Per layer is opt-in (--float-search layer): on the quickstart's student and on mobileone_s2 and efficientnet_b0
    it found no float set within the cap and cost 2-5x the block search's time (docs/export.md)."""
    import inspect

    from edgekit import cli
    from edgekit.export.int8 import MAX_FLOAT, SEARCH_BY, Int8, Search
    from edgekit.export.quantize import quantize_checkpoint

    assert SEARCH_BY == "block" and Int8(float_layers="auto").search_by == SEARCH_BY
    for fn in (cli.export, cli.quantize):  # the CLI spells its defaults out (it does not import torch to read them)
        assert inspect.signature(fn).parameters["float_search"].default == SEARCH_BY
        assert inspect.signature(fn).parameters["max_float"].default == MAX_FLOAT
    assert inspect.signature(quantize_checkpoint).parameters["search_by"].default == SEARCH_BY
    assert inspect.signature(quantize_checkpoint).parameters["max_float"].default == MAX_FLOAT
    assert Search.__dataclass_fields__["by"].default == SEARCH_BY
