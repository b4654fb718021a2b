import subprocess
import sys

import pytest

from edgekit.cli import main


def test_help_does_not_import_torch():
    code = ("import sys; from edgekit.cli import main; rc = main(['--help']); "
            "sys.exit(3 if 'torch' in sys.modules else rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "distill" in proc.stdout


@pytest.mark.parametrize("command", ["train", "distill", "reparam", "export", "quantize", "predict", "bench",
                                     "quickstart"])
def test_every_command_has_help_with_examples(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Examples" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/no/such/folder"], "dataset not found: /no/such/folder"),
    (["train", "--model", "resnet999"], "unknown timm model 'resnet999'"),
    (["train", "--set", "train.epochs=-1"], "train.epochs"),
    (["train", "--heads", "a:b:c:d"], "name[:kind[:loss]]"),
    (["train", "--resume", "/no/such/run"], "cannot resume"),
    (["distill", "--teacher", "open_clip:ViT-B-32", "--set", "data.limit=8"], "--teacher-weights PATH"),
    (["train", "--device", "tpu", "--set", "data.limit=8", "--imgsz", "16", "--model", "test_resnet"],
     "unknown device"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_usage_errors_exit_2(capsys):
    assert main(["train", "--epochs", "many"]) == 2
    assert main(["nonsense"]) == 2


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("edgekit ")


def test_export_and_predict_commands(trained_run, val_pngs, tmp_path, capsys):
    ckpt = str(trained_run.run_dir / "best.pt")
    assert main(["export", ckpt, "--target", "onnx", "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "model.onnx")
    first = sorted(val_pngs.iterdir())[0]
    assert main(["predict", str(tmp_path / "model.onnx"), str(first), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{first}: digit=") and line.count("(") == 2
    assert main(["predict", str(tmp_path / "model.onnx"), str(val_pngs), "--json"]) == 0
    import json

    results = json.loads(capsys.readouterr().out)
    assert len(results) == len(list(val_pngs.iterdir())) and "digit" in results[0]["predictions"]


def test_predict_on_a_video(exported, tmp_path, capsys):
    import cv2
    import numpy as np

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    assert main(["predict", str(exported.out_dir / "model.tflite"), str(path), "--stride", "2", "--json"]) == 0
    import json

    assert [r["frame"] for r in json.loads(capsys.readouterr().out)] == [0, 2, 4]


@pytest.mark.parametrize("argv, message", [
    (["export", "{tmp}/nothing.pt"], "checkpoint not found"),
    (["export", "{ckpt}", "--target", "tensorrt"], "--target must be"),
    (["reparam", "{ckpt}"], "no reparameterizable blocks"),
    (["quantize", "{ckpt}", "--method", "magic"], "--method must be ptq or qat"),
    (["predict", "{tmp}/model.onnx", "{tmp}"], "model file not found"),
    (["predict", "{onnx}", "{tmp}/missing.png"], "not found"),
    (["predict", "{onnx}", "{tmp}/bad.png"], "cannot read image"),
    (["bench", "{onnx}", "--backend", "tensorrt"], "--backend must be"),
    (["bench", "{onnx}", "--batch", "0"], "positive"),
    (["bench", "{tmp}/nope.onnx", "--out", "{tmp}/b"], "neither a model file nor a timm model name"),
    # issue 22: each used to end in a traceback or be accepted silently
    (["reparam", "{ckpt}", "--images", "0"], "at least one val image (--images >= 1), got 0"),
    (["quantize", "{ckpt}", "--method", "qat", "--epochs", "0"], "QAT fine-tunes for --epochs >= 1, got 0"),
    (["train", "--config", "{ckpt}"], "is not a YAML text file"),
    (["export", "{ckpt}", "--target", "onnx", "--out", "{tmp}/bad.png"], "is a file, not a folder"),
    (["demo", "webcam", "-m", "{onnx}", "--source", "{tmp}", "--headless", "--out", "/proc/nope/a.mp4"],
     "cannot write /proc/nope/a.mp4"),
    (["check", "{onnx}", "--max-latency-ms", "-1"], "--max-latency-ms is a limit and must be positive, got -1"),
    (["bench", "{onnx}", "--threads", "0", "--out", "{tmp}/b"], "--threads must be at least 1"),
])
def test_stage_commands_bad_input(argv, message, trained_run, exported, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"junk")
    fill = {"tmp": str(tmp_path), "ckpt": str(trained_run.run_dir / "best.pt"),
            "onnx": str(exported.out_dir / "model.onnx")}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]
    assert err.startswith("error: ") and message in err


def test_bad_numbers_and_broken_files_are_one_line_errors(trained_run, tmp_path, capsys):
    ckpt = str(trained_run.run_dir / "best.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x04 this is not a checkpoint")
    cases = [
        (["quantize", ckpt, "--calib", "0", "--out", str(tmp_path / "q")], "at least one image"),
        (["export", ckpt, "--imgsz", "3", "--target", "onnx", "--out", str(tmp_path / "e")], "too small"),
        (["distill", "--teacher", "timm:resnet18", "--teacher-weights", str(broken), "--set", "data.limit=8",
          "--imgsz", "16", "--out", str(tmp_path / "d")], "cannot read teacher weights"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "e" / "model.onnx").exists()
