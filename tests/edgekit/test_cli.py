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


@pytest.mark.parametrize("command", ["train", "distill"])
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
