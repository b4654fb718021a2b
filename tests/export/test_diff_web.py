"""edgekit diff on web bundles: the bundle's ONNX graph with each module's last tensor as an extra output, run by the
bundle's own onnxruntime-web (WebAssembly) in headless Chromium."""

from __future__ import annotations

import json
import shutil

import pytest


def _export(ckpt, out):
    from edgekit.export.exporter import export_checkpoint

    export_checkpoint(ckpt, targets=["web"], out_dir=out, verify=False, golden=True, verbose=False)
    return out / "model.web"


@pytest.fixture(scope="module")
def clean_web(trained_run, chromium, ort_web, tmp_path_factory):
    return _export(trained_run.run_dir / "best.pt", tmp_path_factory.mktemp("diff_web"))


@pytest.fixture(scope="module")
def faulty_web(trained_run, chromium, ort_web, tmp_path_factory):
    """The bundle of the same model with the middle backbone conv's weights times 4: ``(bundle, module)``."""
    import torch

    from edgekit.train.checkpoint import save_checkpoint

    ckpt = torch.load(trained_run.run_dir / "best.pt", map_location="cpu", weights_only=True)
    state = ckpt["model_state"]
    convs = [k for k, v in state.items() if k.startswith("backbone.") and k.endswith(".weight") and v.ndim == 4]
    key = convs[len(convs) // 2]
    state[key] = state[key] * 4.0
    folder = tmp_path_factory.mktemp("diff_web_faulty")
    return _export(save_checkpoint(folder / "bad.pt", ckpt), folder / "files"), key.rsplit(".", 1)[0]


def test_a_healthy_bundle_agrees_in_every_mapped_layer(clean_web, trained_run, tmp_path):
    from edgekit.export.diff import diff

    report = diff(clean_web, out_dir=tmp_path)
    assert report["against"] == str(trained_run.run_dir / "best.pt")
    assert report["file_runner"].startswith("onnxruntime-web") and " on wasm " in report["file_runner"]
    assert "Chromium" in report["file_runner"]
    assert len(report["layers"]) >= 20, report["no_counterpart"][:5]
    assert report["first_diverging"] is None, report["first_diverging"]
    assert "heads.h_digit" in [report["layers"][-1]["layer"], *report["layers"][-1]["also"]]
    assert report["taps_changed_outputs_rel"] < 1e-4  # the tapped graph's heads = the page's own session's


def test_the_faulty_layer_of_a_bundle_is_named_first(faulty_web, trained_run, tmp_path):
    from edgekit.export.diff import diff

    bundle, module = faulty_web
    report = diff(bundle, against=trained_run.run_dir / "best.pt", out_dir=tmp_path)
    first = report["first_diverging"]
    assert first is not None
    assert any(module.startswith(n) or n.startswith(module) for n in [first["layer"], *first["also"]]), (module, first)
    assert all(r["sqnr_db"] is None or r["sqnr_db"] > report["threshold_db"] for r in report["layers"][:first["index"]])


def test_a_bundle_against_its_onnx_file(clean_web, tmp_path):
    """The browser against native onnxruntime, layer by layer, on the same graph: every layer agrees."""
    from edgekit.export.diff import diff

    report = diff(clean_web, against=clean_web / "model.onnx", out_dir=tmp_path)
    assert report["reference_runner"].startswith("onnxruntime (CPU)") and "Chromium" in report["file_runner"]
    assert len(report["layers"]) >= 20 and report["first_diverging"] is None
    assert min(r["sqnr_db"] or 1e9 for r in report["layers"]) > 90  # the same kernels' arithmetic, to float32


# -- bad inputs: one line, exit 2 ----------------------------------------------------------------------------------
def _cli(capsys, *argv):
    from edgekit.cli import main

    code = main(["diff", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


def test_a_bundle_in_ort_format(clean_web, tmp_path, capsys):
    bundle = tmp_path / "m.web"
    bundle.mkdir()
    manifest = json.loads((clean_web / "manifest.json").read_text())
    manifest["model"]["file"] = "model.ort"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(clean_web / "card.json", bundle / "card.json")
    code, err = _cli(capsys, bundle)
    assert code == 2 and err.count("\n") == 0 and "model.ort, not an ONNX file" in err, err


def test_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    (tmp_path / "x.web").mkdir()
    code, err = _cli(capsys, tmp_path / "x.web")
    assert code == 2 and err.count("\n") == 0 and "not a web bundle" in err, err
