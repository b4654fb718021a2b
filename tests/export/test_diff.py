"""edgekit diff: per format, a healthy file agrees layer by layer and a file with one faulty layer is traced to that
layer; bad inputs are one line with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

FORMATS = {"onnx": "model.onnx", "tflite": "model.tflite", "openvino": "model.xml"}


def _export(ckpt, out):
    from edgekit.export.exporter import export_checkpoint

    export_checkpoint(ckpt, targets=list(FORMATS), out_dir=out, verify=False, golden=True, verbose=False)
    return out


@pytest.fixture(scope="module")
def clean(trained_run, tmp_path_factory):
    return _export(trained_run.run_dir / "best.pt", tmp_path_factory.mktemp("diff_clean"))


@pytest.fixture(scope="module")
def faulty(trained_run, tmp_path_factory):
    """The same model with one conv's weights scaled by 4 (its files' cards still name the original checkpoint as
    their source only through --against): ``(folder, faulty module)``."""
    import torch

    from edgekit.train.checkpoint import save_checkpoint

    src = trained_run.run_dir / "best.pt"
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    state = ckpt["model_state"]
    convs = [k for k, v in state.items() if k.startswith("backbone.") and k.endswith(".weight") and v.ndim == 4]
    key = convs[len(convs) // 2]
    state[key] = state[key] * 4.0
    folder = tmp_path_factory.mktemp("diff_faulty")
    bad = save_checkpoint(folder / "bad.pt", ckpt)
    return _export(bad, folder / "files"), key.rsplit(".", 1)[0]


def _names(first):
    return [first["layer"], *first["also"]]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_healthy_file_agrees_in_every_mapped_layer(clean, trained_run, tmp_path, fmt):
    from edgekit.export.diff import diff

    report = diff(clean / FORMATS[fmt], data=None, out_dir=tmp_path)
    assert report["against"] == str(trained_run.run_dir / "best.pt")  # the card's provenance found the checkpoint
    assert len(report["layers"]) >= 20, report["no_counterpart"][:5]
    assert report["first_diverging"] is None, report["first_diverging"]
    assert min(r["sqnr_db"] or 1e9 for r in report["layers"]) > report["threshold_db"]
    assert report["layout"] == ("NHWC" if fmt == "tflite" else "NCHW")
    # the heads are the last rows (LiteRT renames the graph's outputs serving_default_output_<i>: the backbone's
    # pool is its last named tensor), and the taps did not change what the file computes
    last = [report["layers"][-1]["layer"], *report["layers"][-1]["also"]]
    assert "backbone.global_pool" in last if fmt == "tflite" else "heads.h_digit" in last, last
    assert report["taps_changed_outputs_rel"] < 1e-4
    on_disk = json.loads((tmp_path / "diff.json").read_text())
    assert on_disk["layers"] == report["layers"] and (tmp_path / "diff.png").stat().st_size > 1000


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_faulty_layer_is_named_first(faulty, trained_run, tmp_path, fmt):
    from edgekit.export.diff import diff

    folder, module = faulty
    report = diff(folder / FORMATS[fmt], against=trained_run.run_dir / "best.pt", out_dir=tmp_path)
    first = report["first_diverging"]
    assert first is not None
    # the named row is the faulty conv, or the block holding it when the conv was fused with its norm
    assert any(module.startswith(n) or n.startswith(module) for n in _names(first)), (module, first)
    k = first["index"]
    assert all(r["sqnr_db"] is None or r["sqnr_db"] > report["threshold_db"] for r in report["layers"][:k])


def test_file_against_file(clean, faulty, tmp_path):
    """FP32 file vs another file of the same model: the faulty layer again, with no checkpoint involved."""
    from edgekit.export.diff import diff

    folder, module = faulty
    report = diff(folder / "model.onnx", against=clean / "model.onnx", out_dir=tmp_path)
    assert any(module.startswith(n) or n.startswith(module) for n in _names(report["first_diverging"]))


def test_tflite_names_map_through_module_lists():
    """LiteRT drops ModuleList levels (never called) and prefixes each module with its class: the path is rebuilt."""
    from edgekit.runtime.taps import tflite_module

    name = ("edgekit.train.trained.ChannelsLast/edgekit.train.trained.HeadsAsTuple_module/edgekit.train.models."
            "EdgeModel_model/timm.models.byobnet.ByobNet_backbone/timm.models.byobnet.MobileOneBlock_stem/"
            "timm.layers.conv_bn_act.ConvNormAct_0/timm.layers.norm_act.BatchNormAct2d_bn;;timm.models.byobnet."
            "ByobNet_backbone/timm.models.byobnet.MobileOneBlock_stem/timm.layers.conv_bn_act.ConvNormAct_0/"
            "torch.nn.modules.conv.Conv2d_conv;1")
    assert tflite_module(name) == "module.model.backbone.stem.0.bn"
    assert tflite_module("serving_default_args_0") is None


def test_the_verdict_is_the_jump_not_the_accumulation():
    from edgekit.export.diff import first_jump

    rows = [{"sqnr_db": s} for s in (40.0, 32.0, 28.0, 9.0, 8.0, 5.0, 3.0)]  # slow decline, one jump at index 3
    assert first_jump(rows, threshold=10.0)["index"] == 3
    assert first_jump([{"sqnr_db": s} for s in (40.0, 35.0, None)], threshold=10.0) is None
    inf = [{"sqnr_db": s} for s in (40.0, -np.inf, -np.inf)]  # an overflow: the first non-finite layer
    assert first_jump(inf, threshold=10.0)["index"] == 1


# -- bad inputs: one line, exit 2 ----------------------------------------------------------------------------------
def _cli(capsys, *argv):
    from edgekit.cli import main

    code = main(["diff", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return code, err


def test_a_card_less_file_needs_a_reference(foreign_models, capsys):
    code, err = _cli(capsys, foreign_models / "cls.onnx")
    assert code == 2 and err.count("\n") == 0 and "--against" in err and "no edgekit model card" in err


def test_layer_names_that_do_not_map(foreign_models, trained_run, capsys):
    code, err = _cli(capsys, foreign_models / "cls.onnx", "--against", trained_run.run_dir / "best.pt")
    assert code == 2 and err.count("\n") == 0 and "maps to a module" in err, err


def test_a_reference_of_another_architecture(clean, mobileone_run, capsys):
    code, err = _cli(capsys, clean / "model.onnx", "--against", mobileone_run.run_dir / "best.pt")
    assert code == 2 and err.count("\n") == 0 and "not the same model" in err and "mobileone_s0" in err, err


def test_a_missing_file(tmp_path, capsys):
    code, err = _cli(capsys, tmp_path / "nothing.onnx")
    assert code == 2 and err == f"error: model file not found: {tmp_path / 'nothing.onnx'}"
    code, err = _cli(capsys, tmp_path / "nothing.onnx", "--on", "pi")  # said before any device is looked up
    assert code == 2 and err == f"error: model file not found: {tmp_path / 'nothing.onnx'}"


def test_a_format_it_does_not_tap_says_so(tmp_path, capsys):
    (tmp_path / "m.mlpackage").mkdir()
    code, err = _cli(capsys, tmp_path / "m.mlpackage", "--against", tmp_path / "m.mlpackage")
    assert code == 2 and "not run here" in err and "macOS" in err and err.count("\n") == 0, err


def test_a_gate_failure_names_the_first_diverging_layer(trained_run, outlier_checkpoint, tmp_path):
    """INT8 of a model with one huge activation channel (backbone.bn2): the failure's line names that layer; the
    passing FP32 file is not diffed (the passing path pays nothing)."""
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.gates import gate_failures_text

    bad = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")
    report = export_checkpoint(bad, targets=["onnx"], out_dir=tmp_path / "out", int8=True, calib_images=32,
                               verbose=False, strict=False)
    by_file = {e["file"]: e for e in report.parity}
    assert "first_diverging" not in by_file["model.onnx"] and by_file["model.onnx"]["passed"]
    failed = by_file["model.int8.onnx"]
    assert not failed["passed"]
    assert failed["first_diverging"]["layer"].startswith("backbone.bn2"), failed["first_diverging"]
    assert "first diverging layer: backbone.bn2" in gate_failures_text(failed)


def test_data_gives_the_inputs(clean, val_pngs, tmp_path):
    from edgekit.export.diff import diff

    report = diff(clean / "model.onnx", data=str(val_pngs), images=3, out_dir=tmp_path)
    assert report["inputs"] == f"3 images from {val_pngs}" and report["first_diverging"] is None
    assert len(report["layers"]) >= 20


def test_int8_onnx_of_a_fused_mobileone_is_compared_at_its_relus(mobileone_run, tmp_path, monkeypatch):
    """onnxruntime's quantizer drops the ReLU after each of a fused MobileOne's convs and lets the QuantizeLinear's
    range (from 0) clip instead, so the tensor the file names after the conv holds max(0, x). Compared with the
    conv's own output it read 3 dB at every layer of the quickstart's student at 224 px, and diff named the stem;
    compared at the ReLU it reads what INT8 costs."""
    from edgekit.compress.reparam import fuse_checkpoint
    from edgekit.export.diff import diff
    from edgekit.export.exporter import export_checkpoint

    monkeypatch.setattr("edgekit.compress.reparam.eager_latency_ms", lambda *a, **k: 0.0)  # its timing: 45 s here
    fused = fuse_checkpoint(mobileone_run.run_dir / "best.pt", tmp_path / "fused", n_images=16)
    export_checkpoint(fused.path, targets=["onnx"], out_dir=tmp_path / "out", int8=True, calib_images=32,
                      verify=False, golden=True, verbose=False)
    report = diff(tmp_path / "out" / "model.int8.onnx", out_dir=tmp_path / "d")
    rows, why = report["layers"], {m["module"]: m["why"] for m in report["no_counterpart"]}
    assert rows[0]["layer"] == "backbone.stem.act", rows[0]
    assert rows[0]["sqnr_db"] > 25, rows[0]  # one conv in INT8, compared at its ReLU
    at_relus = [r for r in rows if r["layer"].endswith(".act")]
    assert len(at_relus) >= 10 and all(r["cosine"] > 0.95 for r in at_relus[:5]), at_relus[:5]
    assert "folded into the file's quantizer" in why["backbone.stem.reparam_conv"]


def test_a_clipped_tensor_moves_to_the_relu_or_relu6_that_follows_and_only_there():
    """The rule behind the test above, on its own: a tap after a quantizer from 0 goes to the next module that is its
    conv's output clipped (ReLU, or ReLU6 whose Clip onnxruntime drops the same way); with no such module it stays,
    and a tap not read after such a quantizer never moves."""
    from edgekit.export.diff import absorbed_activations
    from edgekit.runtime.taps import Tap

    x = np.linspace(-8, 8, 64, dtype=np.float32).reshape(1, 4, 4, 4)
    ref = {"conv": x, "bn": x * 2, "relu6": np.clip(x, 0, 6), "relu": np.maximum(x, 0), "block": np.maximum(x, 0)}
    clip = Tap("conv", "t", "Conv", clips_at_zero=True)
    for act in ("relu", "relu6"):
        order = ["conv", act, "block"]
        mapping, why = absorbed_activations(order, ref, {"conv": clip, "block": clip})
        assert mapping == {act: clip, "block": clip} and act in why["conv"]
    plain = Tap("conv", "t", "Conv")
    assert absorbed_activations(["conv", "relu"], ref, {"conv": plain})[0] == {"conv": plain}
    assert absorbed_activations(["conv", "bn"], ref, {"conv": clip})[0] == {"conv": clip}  # no activation follows
    # an activation's output (a SiLU's few small negatives rounded into a range from 0) is not moved to the block
    # that returns it unchanged, nor on from there (the outlier model above: it went on to the pool and the head)
    silu = np.where(x > 0, x, 1e-6 * x)
    ref2 = {"act": silu, "block": silu, "pool": np.maximum(silu, 0)}
    assert absorbed_activations(["act", "block", "pool"], ref2, {"act": clip, "block": clip})[0] == \
        {"act": clip, "block": clip}
    order = ["conv", "relu", "block", "after"]
    ref3 = {**ref, "after": np.clip(ref["relu"], 0, 6)}  # would match the ReLU's output in turn
    mapping = absorbed_activations(order, ref3, {"conv": clip, "block": clip})[0]
    assert mapping == {"relu": clip, "block": clip}
