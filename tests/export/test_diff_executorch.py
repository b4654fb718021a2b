"""edgekit diff on ExecuTorch .pte files: the XNNPACK delegate shows only its inputs and outputs (measured through the
file's own ETDump), so the layers come from the program rebuilt from the card's checkpoint with each module's last
tensor as an extra output, trusted only when its heads match the file's own run."""

from __future__ import annotations

import pytest

pytest.importorskip("executorch.exir")


def _export(ckpt, out, imgsz=None):
    from edgekit.export.exporter import export_checkpoint

    export_checkpoint(ckpt, targets=["executorch"], out_dir=out, verify=False, golden=True, verbose=False, imgsz=imgsz)
    return out / "model.pte"


def _faulty_checkpoint(src, dst):
    """``src`` with the middle backbone conv's weights times 4: ``(checkpoint, faulty module)``."""
    import torch

    from edgekit.train.checkpoint import save_checkpoint

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    state = ckpt["model_state"]
    convs = [k for k, v in state.items() if k.startswith("backbone.") and k.endswith(".weight") and v.ndim == 4]
    key = convs[len(convs) // 2]
    state[key] = state[key] * 4.0
    return save_checkpoint(dst, ckpt), key.rsplit(".", 1)[0]


@pytest.fixture(scope="module")
def clean_pte(trained_run, tmp_path_factory):
    """Exported at 24 px, not the 16 px it trained at (``export --imgsz``): the rebuild must be at the file's size."""
    return _export(trained_run.run_dir / "best.pt", tmp_path_factory.mktemp("diff_pte"), imgsz=24)


@pytest.fixture(scope="module")
def faulty_pte(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("diff_pte_faulty")
    bad, module = _faulty_checkpoint(trained_run.run_dir / "best.pt", folder / "bad.pt")
    return _export(bad, folder / "files"), module, bad


def test_a_healthy_pte_agrees_in_every_mapped_layer(clean_pte, trained_run, tmp_path):
    from edgekit.export.diff import diff
    from edgekit.runtime.metadata import read_card

    report = diff(clean_pte, out_dir=tmp_path)
    assert list(read_card(clean_pte).input.size) == [24, 24]  # not the checkpoint's 16 px
    assert report["against"] == str(trained_run.run_dir / "best.pt")
    assert len(report["layers"]) >= 20, report["no_counterpart"][:5]
    assert report["first_diverging"] is None, report["first_diverging"]
    assert min(r["sqnr_db"] or 1e9 for r in report["layers"]) > report["threshold_db"]
    assert "heads.h_digit" in [report["layers"][-1]["layer"], *report["layers"][-1]["also"]]
    assert report["taps_changed_outputs_rel"] < 1e-4  # the rebuild computes what the file computes
    # what the file's own run shows, measured: one delegate call, its input and output, no per-operator tensor
    assert "1 delegate call keeping 2 tensors" in report["notes"][0] and "0 tensors of single" in report["notes"][0]


def test_the_faulty_layer_of_a_pte_is_named_first(faulty_pte, trained_run, tmp_path):
    from edgekit.export.diff import diff

    path, module, _ = faulty_pte
    report = diff(path, against=trained_run.run_dir / "best.pt", out_dir=tmp_path)
    first = report["first_diverging"]
    assert first is not None
    assert any(module.startswith(n) or n.startswith(module) for n in [first["layer"], *first["also"]]), (module, first)
    assert all(r["sqnr_db"] is None or r["sqnr_db"] > report["threshold_db"] for r in report["layers"][:first["index"]])


# -- bad inputs: one line, exit 2 ----------------------------------------------------------------------------------
def _cli(capsys, *argv):
    from edgekit.cli import main

    code = main(["diff", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


def test_a_pte_whose_checkpoint_is_gone(faulty_pte, trained_run, tmp_path, capsys):
    path, _, bad = faulty_pte
    bad.rename(tmp_path / "away.pt")
    try:
        code, err = _cli(capsys, path, "--against", trained_run.run_dir / "best.pt")
    finally:
        (tmp_path / "away.pt").rename(bad)
    assert code == 2 and err.count("\n") == 0 and f"({bad})" in err and "not found here" in err, err


def test_a_pte_that_is_not_what_its_checkpoint_lowers_to(faulty_pte, trained_run, tmp_path, capsys):
    """The card names a checkpoint that now holds other weights: the rebuild cannot stand for the file."""
    import shutil

    path, _, bad = faulty_pte
    saved = shutil.copy(bad, tmp_path / "saved.pt")
    shutil.copy(trained_run.run_dir / "best.pt", bad)
    try:
        code, err = _cli(capsys, path, "--against", trained_run.run_dir / "best.pt")
    finally:
        shutil.copy(saved, bad)
    assert code == 2 and err.count("\n") == 0 and "gives other outputs than the file" in err, err


def test_a_card_less_pte(tmp_path, trained_run, capsys):
    (tmp_path / "m.pte").write_bytes(b"not a program")
    code, err = _cli(capsys, tmp_path / "m.pte", "--against", trained_run.run_dir / "best.pt")
    assert code == 2 and err.count("\n") == 0, err
