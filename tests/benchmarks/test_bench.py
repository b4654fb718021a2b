import importlib.util
import json
import os

import pytest

from edgekit.benchmarks.harness import Bench, check_device, measure
from edgekit.benchmarks.report import cell, markdown_table, pareto_front, threads_line, write_reports
from edgekit.benchmarks.stats import latency_stats, time_calls
from edgekit.cli import parse_backends, parse_batches
from edgekit.errors import ConfigError, EdgekitError

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None


def test_percentiles_on_known_samples():
    s = latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(100)
    assert s["spread_pct"] == pytest.approx((75.25 - 25.75) / 50.5 * 100)
    assert latency_stats([0.002] * 5)["std_ms"] == 0.0
    with pytest.raises(ValueError):
        latency_stats([])


def test_time_calls_respects_minimums():
    ticks = iter(range(10**6))
    calls = []
    samples = time_calls(lambda: calls.append(1), min_runs=7, min_seconds=20, warmup=3, clock=lambda: next(ticks))
    assert len(samples) >= 7 and len(calls) == len(samples) + 3
    assert all(s == 1 for s in samples)


def test_each_measurement_runs_in_its_own_process(exported, tmp_path):
    from edgekit.runtime.metadata import read_card

    f = exported.out_dir / "model.onnx"
    b = Bench(name="tiny", card=read_card(f), files={"ort": f, "tflite": exported.out_dir / "model.tflite"})
    rows = [measure(b, backend, 2, "cpu", 1, None, tmp_path, 0.1) for backend in ("ort", "tflite", "ort")]
    pids = {r["pid"] for r in rows}
    assert len(pids) == 3 and os.getpid() not in pids
    for r in rows:
        assert r["p50_ms"] > 0 and r["runs"] >= 50 and r["throughput_ips"] > 0
        assert r["peak_rss_mb"] >= r["rss_before_load_mb"] > 0
    broken = Bench(name="broken", card=b.card, files={"ort": tmp_path / "missing.onnx"})
    row = measure(broken, "ort", 1, "cpu", 1, None, tmp_path, 0.1)
    assert "error" in row and "not found" in row["error"] and "p50_ms" not in row


def test_report_writers_and_na(tmp_path):
    rows = [
        {"model": "t", "role": "teacher", "backend": "torch", "precision": "fp32", "batch": 1, "params": 2_000_000,
         "gflops": 0.5, "size_mb": 8.0, "p50_ms": 2.0, "p90_ms": 2.2, "p99_ms": 3.0, "spread_pct": 4.0,
         "throughput_ips": 500.0, "peak_rss_mb": 300.0, "accuracy": {"digit": 0.99}, "threads": 2,
         "threads_from": "torch.get_num_threads"},
        {"model": "s", "role": "model", "backend": "tflite", "precision": "int8", "batch": 1, "params": 500_000,
         "threads": 2, "threads_from": "set", "gflops": None, "size_mb": 0.5, "p50_ms": 0.1, "p90_ms": 0.12,
         "p99_ms": 0.2, "spread_pct": 5.0,
         "throughput_ips": 10000.0, "peak_rss_mb": 80.0, "accuracy": {"digit": 0.97},
         "speedup_vs_teacher_torch": 20.0, "compression_vs_teacher": 4.0},
        {"model": "s", "role": "model", "backend": "ort", "precision": "int8", "batch": 1, "params": 500_000,
         "size_mb": 0.5, "error": "RuntimeError: boom"},
    ]
    paths = write_reports(rows, tmp_path, ["a note"], {"machine": "test"})
    data = json.loads(paths["json"].read_text())
    assert data["rows"][1]["speedup_vs_teacher_torch"] == 20.0 and data["notes"] == ["a note"]
    csv_lines = paths["csv"].read_text().splitlines()
    assert len(csv_lines) == 4 and "digit=0.9700" in csv_lines[2]
    md = paths["md"].read_text()
    assert "| s | ort | int8 | 1 | n/a | 0.50 | n/a | 0.5 | n/a |" in md and "n/a because RuntimeError: boom" in md
    assert "every backend ran with 2 threads (torch 2 (torch.get_num_threads); tflite 2 (set))" in md
    rows[1]["threads"] = 1  # a backend that ran with another count is named, never hidden
    assert threads_line(rows).startswith("backends ran with different thread counts: torch 2")
    assert "20.0x" in md and "a note" in md and "pareto.png" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cell(rows[2], "peak_rss_mb") == "n/a" and cell({"gflops": None}, "gflops") == "n/a"
    assert markdown_table(rows).count("\n") == 5


def test_pareto_front():
    # (latency, accuracy): the fast-but-worse and slow-but-better points survive, the dominated one does not
    assert pareto_front([(1.0, 0.9), (2.0, 0.95), (3.0, 0.94), (0.5, 0.8)]) == [0, 1, 3]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="--backend"):
        parse_backends("torch,tensorrt")
    with pytest.raises(ConfigError, match="--batch"):
        parse_batches("1,x")
    with pytest.raises(ConfigError, match="positive"):
        parse_batches("0")
    assert parse_batches("1, 8") == [1, 8] and parse_backends("all") == ["torch", "ort", "tflite", "coreml",
                                                                          *(["openvino"] if HAVE_OPENVINO else [])]
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EdgekitError, match="torch sees no CUDA device"):
            check_device("cuda", ["torch"])
    if not torch.backends.mps.is_available():
        with pytest.raises(EdgekitError, match="MPS needs macOS"):
            check_device("mps", ["torch"])
    with pytest.raises(EdgekitError, match="unknown device"):
        check_device("tpu", ["ort"])
