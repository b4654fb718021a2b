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
    from edgekit.recipes.quantize import quantize_checkpoint

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
