"""Clip models through export and the runtime: the frame count travels in the card."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.errors import ConfigError


@pytest.fixture(scope="module")
def clip_export(clip_run, tmp_path_factory):
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("clip_export")
    return export_checkpoint(clip_run.run_dir / "best.pt", ["onnx", "tflite"], out, dynamic_batch=True, fp16=True,
                             verbose=False)


def test_clip_export_parity_and_card(clip_export):
    from edgekit.runtime.metadata import read_card

    files = {a.path.name for a in clip_export.artifacts}
    assert files == {"model.onnx", "model.fp16.onnx", "model.tflite", "model.fp16.tflite"}
    for entry in clip_export.parity:
        assert entry["passed"], entry
        if entry["precision"] == "fp32":
            assert entry["max_rel"] <= 1e-4
    for art in clip_export.artifacts:
        card = read_card(art.path)
        assert card.input.frames == 4 and card.temporal["pooling"] == "attention"


def test_clip_export_refuses_what_it_cannot_do(clip_run, tmp_path):
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.quantize import quantize_checkpoint

    with pytest.raises(ConfigError, match="CoreML"):
        export_checkpoint(clip_run.run_dir / "best.pt", ["coreml"], tmp_path, verbose=False)
    with pytest.raises(ConfigError, match="INT8"):
        export_checkpoint(clip_run.run_dir / "best.pt", ["onnx"], tmp_path, int8=True, verbose=False)
    with pytest.raises(ConfigError, match="clip model"):
        quantize_checkpoint(clip_run.run_dir / "best.pt", out_dir=tmp_path, verbose=False)


def _clips(n: int, frames: int) -> list[list[np.ndarray]]:
    from edgekit.config import load_config
    from edgekit.train.data import load_data

    cfg = load_config(overrides={"data.source": "moving_digits", "data.frames": frames, "data.imgsz": 16})
    data = load_data(cfg.data, [])
    return [[np.asarray(f)[:, :, ::-1] for f in data.val.load(i)] for i in range(n)]  # BGR, like OpenCV


def test_runtime_predicts_clips_like_torch(clip_run, clip_export):
    from edgekit.runtime import load
    from edgekit.runtime.preprocess import InputError
    from edgekit.train.torch_backend import load as load_checkpoint_model

    torch_model = load_checkpoint_model(clip_run.run_dir / "best.pt")
    clips = _clips(6, 4)
    ref = torch_model.run(torch_model.preprocess(clips))["direction"]
    for art in clip_export.artifacts:
        model = load(art.path)
        batch = model.preprocess(clips)
        assert batch.shape[:2] == (6, 4)
        out = model.run(batch)["direction"]
        tol = 1e-4 if art.precision == "fp32" else 5e-2
        np.testing.assert_allclose(out, ref, atol=tol * max(1.0, np.abs(ref).max()))
        one = model.predict(clips[0])  # a single clip (list of frames)
        assert len(one) == 1 and one[0]["direction"]["label"] in ("right", "left", "down", "up")
        as_array = model.predict(np.stack(clips[0]))  # an [F, H, W, 3] array is one clip too
        assert as_array[0]["direction"]["label"] == one[0]["direction"]["label"]
    model = load(clip_export.out_dir / "model.onnx")
    long_clip = [f for f in _clips(1, 8)[0]]  # 8 frames for a 4-frame model: sampled like training does
    assert model.preprocess(long_clip).shape[:2] == (1, 4)
    with pytest.raises(InputError, match=r"expected a batch of shape \[N, 4, 3, 16, 16\]"):
        model.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="clip"):
        model.predict([])


def test_predict_command_on_videos(clip_export, tmp_path, capsys):
    import cv2

    from edgekit.cli import main

    clips = _clips(2, 8)
    for i, clip in enumerate(clips):
        writer = cv2.VideoWriter(str(tmp_path / f"v{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 8, (16, 16))
        for f in clip:
            writer.write(np.ascontiguousarray(f))
        writer.release()
    model = str(clip_export.out_dir / "model.onnx")
    assert main(["predict", model, str(tmp_path / "v0.avi"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"frames": 8' in out and '"direction"' in out
    assert main(["predict", model, str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("direction=") == 2
    cv2.imwrite(str(tmp_path / "still.png"), clips[0][0])
    assert main(["predict", model, str(tmp_path / "still.png")]) == 2
    assert "clip model (4 frames)" in capsys.readouterr().err


def test_clip_model_torch_parity_with_exported_batch(clip_run):
    from edgekit.train.trained import ChannelsLast, load_trained, to_channels_last

    trained = load_trained(clip_run.run_dir / "best.pt")
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        a = trained.model(x)["direction"]
        b = ChannelsLast(trained.wrapped())(to_channels_last(x))[0]
    torch.testing.assert_close(a, b)


def _lying_video(path, frames, claimed: int) -> None:
    """An MJPG AVI of ``frames`` whose headers claim ``claimed`` frames (containers often over-report)."""
    import struct

    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f))
    writer.release()
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, claimed)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, claimed)  # the stream's dwLength
    path.write_bytes(bytes(data))
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == claimed


def test_transformer_and_cross_attention_clips_export_predict_and_bench(tmp_path, tiny_config, capsys):
    """verb + noun clips with transformer pooling and cross-task attention: ONNX and TFLite files pass their
    gates, `edgekit predict` runs them on a video whose container lies about its length, bench measures them."""
    import cv2

    from edgekit.cli import main
    from edgekit.export.exporter import export_checkpoint
    from edgekit.recipes.bench import bench
    from edgekit.train.supervised import train

    for name, n in (("a.avi", 30), ("b.avi", 24)):
        writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
        for i in range(n):
            writer.write(np.full((24, 32, 3), 6 * i, np.uint8))
        writer.release()
    rows = [f"a.avi,{s},{s + 5},{verb},{noun}" for s, verb, noun in ((0, "take", "cup"), (6, "put", "cup"),
                                                                      (12, "take", "plate"), (18, "put", "plate"))]
    rows += [f"b.avi,{s},{s + 4},{verb},{noun}" for s, verb, noun in ((0, "put", "cup"), (5, "take", "plate"),
                                                                       (10, "take", "cup"), (15, "put", "plate"))]
    (tmp_path / "clips.csv").write_text("video,start_frame,stop_frame,verb_class,noun_class\n" + "\n".join(rows * 3))
    cfg = tiny_config(data__source=str(tmp_path / "clips.csv"), data__frames=3, train__epochs=1,
                      model__temporal="transformer", model__cross_attention=True, name="cross")
    run = train(cfg, verbose=False)
    report = export_checkpoint(run.run_dir / "best.pt", ["onnx", "tflite"], tmp_path / "out", verbose=False)
    assert {e["file"] for e in report.parity} == {"model.onnx", "model.tflite"}
    for entry in report.parity:
        assert entry["passed"] and entry["max_rel"] <= 1e-4 and set(entry["heads"]) == {"verb", "noun"}
        assert entry["end_to_end"]["skipped"].startswith("clip model")
    frames = [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(7)]
    _lying_video(tmp_path / "lies.avi", frames, claimed=25)
    import json

    for name in ("model.onnx", "model.tflite"):
        assert main(["predict", str(tmp_path / "out" / name), str(tmp_path / "lies.avi"), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)[0]
        assert result["frames"] == 7 and {"verb", "noun"} <= set(result["predictions"])
    rows, _ = bench([str(tmp_path / "out" / "model.onnx"), str(tmp_path / "out" / "model.tflite")],
                    ["ort", "tflite"], [1], "cpu", None, None, tmp_path / "bench", min_seconds=0.05, verbose=False)
    assert [r["backend"] for r in rows] == ["ort", "tflite"] and all(r["p50_ms"] > 0 for r in rows)
