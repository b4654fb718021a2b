"""Messages name settings the way the caller gives them: flags from the CLI, keywords from Python."""

import platform

import pytest

from edgekit.cli import main
from edgekit.errors import DeviceError, cli_messages, either, option


def test_option_spelling_follows_the_caller():
    assert option("skip_bad", True) == "skip_bad=True" and option("device", "cuda") == "device='cuda'"
    assert option("skip", flag="--skip-layers") == "skip" and either("--a b", "a='b'") == "a='b'"
    with cli_messages():
        assert option("skip_bad", True) == "--skip-bad" and option("device", "cuda") == "--device cuda"
        assert option("skip", flag="--skip-layers") == "--skip-layers" and either("--a b", "a='b'") == "--a b"
    assert option("max_frames") == "max_frames"  # the CLI's context ends with it


@pytest.mark.skipif(platform.system() == "Darwin", reason="MPS may exist on macOS")
def test_python_error_names_keyword_and_cli_error_names_flag(tmp_path, capsys):
    from edgekit.train.device import resolve_device

    with pytest.raises(DeviceError, match=r"^device='mps': Apple MPS is not available.*use device='cpu'"):
        resolve_device("mps")
    assert main(["demo", "kiosk", "-m", str(tmp_path / "m.onnx"), "--headless", "--every", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: kiosk: --every must be at least 1, got --every 0"
