import logging
import os
import sys
import warnings

import pytest

from edgekit.logs import quiet, quiet_native_logs


def test_quiet_silences_the_block_and_restores_the_logger(capsys):
    log = logging.getLogger("edgekit-test-lib")
    log.setLevel(logging.INFO)
    with pytest.raises(RuntimeError), quiet("edgekit-test-lib", logging.WARNING, stdout=True, stderr=True):
        assert log.level == logging.WARNING
        print("progress 10%")
        print("a warning line", file=sys.stderr)
        raise RuntimeError("the converter failed")
    assert log.level == logging.INFO  # restored, also when the block raised
    out = capsys.readouterr()
    assert "progress" not in out.out and "warning line" not in out.err


def test_quiet_level_none_leaves_the_root_logger_and_ignores_warnings(capsys):
    root = logging.getLogger()
    before = root.level
    with quiet(level=None, python_warnings=True):
        assert root.level == before
        warnings.warn("deprecated", UserWarning, stacklevel=1)  # ignored, not raised by -W error
    with quiet():
        assert root.level == logging.ERROR
        print("kept")  # stdout is only dropped when asked
    assert root.level == before and "kept" in capsys.readouterr().out


def test_quiet_native_logs_keeps_what_the_user_set(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.delenv("GLOG_minloglevel", raising=False)
    quiet_native_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["GLOG_minloglevel"] == "2"  # noqa: SIM112 - glog reads this name
    assert logging.getLogger("coremltools").level == logging.ERROR
