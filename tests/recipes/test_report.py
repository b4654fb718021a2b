"""edgekit report: tables and plots from real tiny runs, the sample-efficiency sweep, bad run paths."""

import csv
import json
import shutil

import pytest

from edgekit.cli import main, parse_fractions
from edgekit.errors import RunError
from edgekit.recipes.report import find_runs, load_run
from edgekit.train.supervised import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished tiny runs (different archs, 2 and 1 epochs) in one runs/ folder."""
    from edgekit.config import load_config

    out = tmp_path_factory.mktemp("report") / "runs"
    base = {"data.limit": 64, "data.imgsz": 16, "train.batch_size": 32, "train.threads": 2, "train.save_every": 0,
            "out": str(out)}
    a = train(load_config(overrides={**base, "model.arch": "test_efficientnet", "train.epochs": 2, "name": "a"}),
              verbose=False)
    b = train(load_config(overrides={**base, "model.arch": "test_resnet", "train.epochs": 1, "name": "b"}),
              verbose=False)
    return a, b


def test_report_tables_and_plots(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = tmp_path / "rep"
    assert main(["report", str(a.run_dir), str(b.run_dir), "--out", str(out), "--quiet"]) == 0
    for f in ("report.md", "report.json", "report.csv", "curves.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "sweep.png").exists()
    rows = json.loads((out / "report.json").read_text())["runs"]
    assert [r["name"] for r in rows] == ["a", "b"]
    for row, res in zip(rows, (a, b), strict=True):
        hist = json.loads((res.run_dir / "history.json").read_text())
        vals = [h["val"]["digit/acc"] for h in hist]
        assert row["monitor"] == "digit/acc" and row["stage"] == "train"
        assert row["best"]["value"] == max(vals) == res.best["value"]
        assert row["best"]["epoch"] == vals.index(max(vals)) + 1 == res.best["epoch"]
        assert row["final"]["value"] == vals[-1] and row["final"]["gap"] == hist[-1]["overfit_gap"]
        assert row["params"] == res.card.params and row["train_samples"] == 64
        assert row["val"] == hist[-1]["val"] and "digit/top5" in row["val"]
        assert row["config"]["epochs"] == len(hist) and row["compression"] is None
        assert "frames" not in row["config"]  # image models
    flat = list(csv.DictReader((out / "report.csv").open()))
    assert float(flat[0]["best_val"]) == rows[0]["best"]["value"] and flat[1]["arch"] == "test_resnet"
    md = (out / "report.md").read_text()
    assert "| a | train | test_efficientnet |" in md and "![training curves](curves.png)" in md
    assert f"{rows[0]['best']['value'] * 100:.2f}% ({rows[0]['best']['epoch']})" in md
    assert str(out / "report.md") in capsys.readouterr().out
    # a parent folder and a glob give the same runs
    runs_dir = a.run_dir.parent
    assert find_runs([runs_dir]) == find_runs([str(runs_dir / "*")]) == [a.run_dir, b.run_dir]
    assert find_runs([runs_dir.parent, a.run_dir / "best.pt"]) == [a.run_dir, b.run_dir]


def test_sweep_trains_then_reuses(two_runs, tmp_path, monkeypatch):
    import edgekit.recipes.sweep as rep

    b = two_runs[1]
    out = tmp_path / "rep"
    assert main(["report", str(b.run_dir), "--out", str(out), "--fractions", "0.5,1.0", "--quiet"]) == 0
    data = json.loads((out / "report.json").read_text())
    points = data["sweep"]
    assert [(p["fraction"], p["train_samples"]) for p in points] == [(0.5, 32), (1.0, 64)]
    assert points[1]["run_dir"] == str(b.run_dir) and points[1]["best"] == b.best["value"]
    swept = out / "sweep" / "train" / "b-f0.5"
    assert points[0]["run_dir"] == str(swept) and not points[0]["reused"]
    assert load_run(swept).cfg.data.fraction == 0.5
    for f in ("sweep.png", "sweep.csv"):
        assert (out / f).is_file()
    assert "## Sample efficiency" in (out / "report.md").read_text()

    def no_training(cfg, verbose):
        raise AssertionError(f"retrained {cfg.run_dir}")

    monkeypatch.setattr(rep, "_train", no_training)
    assert main(["report", str(b.run_dir), "--out", str(out), "--fractions", "0.5,1", "--quiet"]) == 0
    again = json.loads((out / "report.json").read_text())["sweep"]
    assert [p["reused"] for p in again] == [True, True]
    assert [p["best"] for p in again] == [p["best"] for p in points]


def test_bad_runs_exit_2(two_runs, tmp_path, capsys):
    a = two_runs[0]
    broken = tmp_path / "broken"
    shutil.copytree(a.run_dir, broken)
    (broken / "history.json").write_text("[{")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(a.run_dir, unfinished)
    (unfinished / "history.json").write_text(json.dumps(json.loads((a.run_dir / "history.json").read_text())[:1]))
    nobest = tmp_path / "nobest"
    shutil.copytree(a.run_dir, nobest)
    (nobest / "best.pt").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(tmp_path / "nope", "run not found"), (broken, "is corrupt"), (unfinished, "unfinished: 1 of 2"),
             (nobest, "best.pt missing"), (empty, "holds no runs"), (str(tmp_path / "zz*"), "no run matches")]
    for path, message in cases:
        assert main(["report", str(path), "--out", str(tmp_path / "rep"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert main(["report", str(a.run_dir), "--fractions", "0,2", "--quiet"]) == 2
    assert "--fractions" in capsys.readouterr().err
    assert main(["report", "--help"]) == 0 and "Examples" in capsys.readouterr().out
    with pytest.raises(RunError):
        load_run(broken)


def test_distill_run_compression_and_sweep(tiny_config, tmp_path):
    from edgekit.compress.distill import distill

    cfg = tiny_config("distill", name="kd", data__limit=64, train__epochs=1, distill__teacher="timm:test_resnet",
                      distill__teacher_epochs=1, distill__views=1, distill__baseline=False)
    kd = distill(cfg, verbose=False)
    teachers = sorted((cfg.run_dir.parents[1] / "teacher").iterdir())
    out = tmp_path / "rep"
    assert main(["report", str(cfg.run_dir), "--out", str(out), "--fractions", "0.5", "--quiet"]) == 0
    data = json.loads((out / "report.json").read_text())
    row, point = data["runs"][0], data["sweep"][0]
    assert row["stage"] == "distill" and row["teacher"]["params"] == kd.teacher["params"]
    assert row["compression"] == pytest.approx(kd.teacher["params"] / kd.student["params"])
    assert f"{row['compression']:.1f}x" in (out / "report.md").read_text()
    assert point["train_samples"] == 32 and point["run_dir"] == str(out / "sweep" / "distill" / "kd-f0.5")
    swept = load_run(point["run_dir"])
    assert swept.cfg.distill.baseline is False and swept.distill["teacher"]["params"] == kd.teacher["params"]
    assert sorted((cfg.run_dir.parents[1] / "teacher").iterdir()) == teachers  # the teacher was reused
    assert not (out / "sweep" / "teacher").exists()


def test_clip_runs_show_frames_and_temporal(two_runs, tmp_path):
    from edgekit.recipes.report import cells, summarize

    clip = tmp_path / "clip"
    shutil.copytree(two_runs[0].run_dir, clip)
    card = json.loads((clip / "card.json").read_text())
    card["input"]["frames"], card["temporal"] = 8, {"pooling": "transformer"}
    (clip / "card.json").write_text(json.dumps(card))
    row = summarize(load_run(clip))
    assert row["config"]["frames"] == 8 and row["config"]["temporal"] == "transformer"
    assert "8 frames, transformer" in cells(row)[4]


def test_parse_fractions():
    assert parse_fractions("1.0, 0.1,0.25,0.5,0.1") == [0.1, 0.25, 0.5, 1.0]
