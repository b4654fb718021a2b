"""The whole deployment path, as a user runs it (long: `pytest -m slow`)."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgekit", "quickstart", "--out", str(tmp_path / "runs"),
                           "--batch", "1,8", "--seconds", "0.5"], capture_output=True, text=True, timeout=1800,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "runs" / "quickstart" / "report.md").read_text()
    for section in ("## Headline", "## Distillation", "## Reparameterization", "## Quantization",
                    "## Exported files and parity", "## Benchmark", "## Time per stage"):
        assert section in report
    assert "x faster" in report and "FAIL" not in report
    assert (tmp_path / "runs" / "quickstart" / "bench" / "pareto.png").is_file()
