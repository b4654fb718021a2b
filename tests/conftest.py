"""Shared fixtures: tiny configs and session-scoped trained runs, so the suite stays fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a model hub


def pytest_addoption(parser):
    parser.addoption("--summary-json", default=None, metavar="PATH",
                     help="Write this run's outcome counts, wall time, machine and load average to PATH (JSON).")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With --summary-json: what ran, how it ended and how long it took, measured by this run (atomic write)."""
    path = config.getoption("--summary-json")
    if not path:
        return

    from edgekit.atomic import write_json
    from edgekit.recipes.deployment import environment

    stats = terminalreporter.stats
    counts = {k: len([r for r in stats.get(k, []) if getattr(r, "when", "call") in ("call", "setup")])
              for k in ("passed", "failed", "skipped", "error", "xfailed", "xpassed")}
    counts["deselected"] = len(stats.get("deselected", []))
    env = environment(packages=())
    write_json(path, {"command": " ".join(["python -m pytest", *config.invocation_params.args]),
                      "marker": config.getoption("-m"), "exit_status": int(exitstatus), **counts,
                      "seconds": round(terminalreporter._session_start.elapsed().seconds, 1),  # pytest's own clock
                      "machine": env["machine"],
                      "cpu_features": env["cpu_features"], "python": env["python"],
                      "load_average_end": [round(x, 2) for x in os.getloadavg()]})

TINY = {
    "model.arch": "test_efficientnet",
    "data.imgsz": 16,
    "data.limit": 96,
    "train.epochs": 2,
    "train.batch_size": 32,
    "train.save_every": 1,
    "train.threads": 2,
}


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(stage="train", **overrides)`` -> a RunConfig writing under tmp_path."""
    from edgekit.config import load_config

    def make(stage: str = "train", sets: list[str] | None = None, **overrides):
        ov = {**TINY, "out": str(tmp_path / "runs"), **{k.replace("__", "."): v for k, v in overrides.items()}}
        return load_config(overrides=ov, sets=sets, stage=stage)

    return make


@pytest.fixture
def age_mood_csv():
    """``age_mood_csv(folder, n=48, gender=False)`` writes n small PNGs and ``labels.csv`` (``path,age,mood``: a
    regression and a 3-class head, both following the image's brightness, so a model learns them; with ``gender`` a
    2-class ``gender`` column too) and returns the CSV's path."""
    def make(root, n: int = 48, gender: bool = False):
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        rows = ["path,age,mood" + (",gender" if gender else "")]
        for i in range(n):
            mood = ["calm", "happy", "sad"][i % 3]
            img = np.full((20, 20, 3), 60 * (i % 3), np.uint8) + rng.integers(0, 30, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"{i}.png")
            rows.append(f"{i}.png,{20 + 20 * (i % 3) + i % 5},{mood}" + (f",{'fm'[i % 2]}" if gender else ""))
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
        return root / "labels.csv"

    return make


@pytest.fixture
def outlier_checkpoint():
    """``outlier_checkpoint(src, dst)``: a checkpoint that INT8 must fail (see ``make``)."""
    def make(src, dst, value=3e4):
        """``src`` with one channel of the last activation (before pooling) pinned at ``value`` everywhere and
        every head's weight on it set to 0: the FP32 outputs are exactly the same, but an 8-bit per-tensor
        activation scale is set by that channel, so every other channel rounds to zero in INT8."""
        import torch

        from edgekit.train.checkpoint import save_checkpoint

        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        state = ckpt["model_state"]
        state["backbone.bn2.weight"][0] = 0.0
        state["backbone.bn2.bias"][0] = value
        for key in [k for k in state if k.startswith("heads.") and k.endswith("1.weight")]:
            state[key][:, 0] = 0.0
        return save_checkpoint(dst, ckpt)

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny model trained for 2 epochs on the digits (shared by every test that needs a checkpoint)."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(overrides={**TINY, "out": str(out / "runs"), "name": "tiny"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """The tiny model exported to every target, with FP16 and INT8 variants, verified."""
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("exported")
    return export_checkpoint(trained_run.run_dir / "best.pt", out_dir=out, int8=True, fp16=True, calib_images=64,
                             verbose=False)


@pytest.fixture(scope="session")
def mobileone_run(tmp_path_factory):
    """A tiny mobileone_s0 (reparameterizable) trained for one epoch."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("mobileone")
    cfg = load_config(overrides={**TINY, "model.arch": "mobileone_s0", "train.epochs": 1, "out": str(out / "runs"),
                                 "name": "m1"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="session")
def val_pngs(tmp_path_factory, trained_run):
    """The tiny run's validation images as PNG files (lossless), named <index>_<label>.png."""
    from edgekit.train.data import load_data
    from edgekit.train.trained import load_trained

    trained = load_trained(trained_run.run_dir / "best.pt")
    cfg, heads = trained.run_config()
    split = load_data(cfg, heads).val
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(len(split)):
        split.load(i).save(folder / f"{i:03d}_{split.targets['digit'][i]}.png")
    return folder


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory):
    """A tiny clip model (4-frame moving digits, attention pooling) trained for one epoch."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("clips")
    cfg = load_config(overrides={**TINY, "data.source": "moving_digits", "data.frames": 4, "data.limit": 64,
                                 "train.epochs": 1, "out": str(out / "runs"), "name": "clip"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory):
    """Tiny model files edgekit did not write (plain torch.onnx.export, onnx.helper, onnxruntime's quantizer,
    litert_torch.convert), with no card: ``cls.onnx`` (one image input, 10 logits), ``two.onnx`` (inputs
    ``image`` with dynamic H, W and ``extra``; outputs ``logits`` and ``score``), ``cls.int8.onnx`` (QDQ),
    ``strings.onnx`` (a string input), ``cls.tflite`` and ``two.int8.tflite`` (full INT8, two outputs, one a
    CUMSUM that XNNPACK leaves to TFLite's kernels)."""
    import warnings

    import numpy as np
    import torch
    from torch import nn

    class Cls(nn.Module):
        def __init__(self, classes: int = 10) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, classes)

        def forward(self, x):
            return self.fc(self.conv(x).relu().mean((2, 3)))

    class Two(Cls):
        def __init__(self) -> None:
            super().__init__(5)
            self.extra = nn.Linear(2, 8)

        def forward(self, image, extra):
            y = self.conv(image).relu().mean((2, 3)) + self.extra(extra)
            return self.fc(y), y.sum(1, keepdim=True)

    class TwoOut(Cls):
        def forward(self, x):
            y = self.conv(x).relu().mean((2, 3))
            return self.fc(y), torch.cumsum(y, dim=1)

    out = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Cls().eval(), (x,), out / "cls.onnx", dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
        torch.onnx.export(Two().eval(), (x, torch.zeros(1, 2)), out / "two.onnx", dynamo=False,
                          input_names=["image", "extra"], output_names=["logits", "score"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "extra": {0: "n"}, "logits": {0: "n"},
                                        "score": {0: "n"}})
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "strings",
                              [helper.make_tensor_value_info("text", TensorProto.STRING, [1])],
                              [helper.make_tensor_value_info("same", TensorProto.STRING, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out / "strings.onnx")

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": np.random.default_rng(i).random((1, 3, 16, 16), np.float32)}
                                 for i in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(out / "cls.onnx"), str(out / "cls.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ)

    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    litert_torch.convert(Cls().eval(), (x,)).export(str(out / "cls.tflite"))
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(TwoOut().eval(), (x,)).module(), quantizer)
    prepared(x)
    litert_torch.convert(convert_pt2e(prepared, fold_quantize=False), (x,),
                         quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out / "two.int8.tflite"))
    return out


@pytest.fixture(scope="session")
def chromium():
    """The system's Chromium for the browser tests; skipped only where none is installed (CI installs it)."""
    from edgekit.errors import DependencyError
    from edgekit.runtime.browser import chromium_path

    try:
        return chromium_path()
    except DependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def ort_web():
    """onnxruntime-web's browser files (npm fetches them once into ~/.cache/edgekit); skipped only where npm is
    absent and nothing is cached (CI installs npm)."""
    from edgekit.errors import DependencyError
    from edgekit.export.web import onnxruntime_web

    try:
        return onnxruntime_web()
    except DependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def audio_run(tmp_path_factory):
    """A tiny sound model (test_efficientnet, one log-mel channel) trained for one epoch on 64 clips of the
    embedded speech_commands (multilabel head ``words``)."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("audio")
    cfg = load_config(overrides={**TINY, "data.source": "speech_commands", "data.limit": 64, "train.epochs": 1,
                                 "out": str(out / "runs"), "name": "sound"})
    return train(cfg, verbose=False)


@pytest.fixture
def sound_files():
    """``sound_files(folder)`` writes user-style sound files and a Freesound-style ``labels.csv`` (quoted
    multi-labels, odd label names) and returns its path: 16 kHz mono WAV, 44.1 kHz stereo FLAC, 8 kHz OGG
    shorter than a window, 22.05 kHz WAV, each a tone whose pitch follows its first label."""
    def make(root, n: int = 12):
        import numpy as np
        import soundfile as sf

        tags = ["Bark", "Walk_and_footsteps", "Chink_and_clink", "Crowd (indoor)", "Café \"noise\""]
        rates = [(16000, "wav", 1, 1.3), (44100, "flac", 2, 2.1), (8000, "ogg", 1, 0.5), (22050, "wav", 1, 1.0)]
        rows = ["fname,labels"]
        for i in range(n):
            rate, ext, channels, seconds = rates[i % len(rates)]
            labels = [tags[i % len(tags)]] + ([tags[(i + 2) % len(tags)]] if i % 2 else [])
            t = np.arange(int(rate * seconds)) / rate
            tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * tags.index(labels[0])) * t).astype(np.float32)
            wave = np.stack([tone, 0.5 * tone], 1) if channels == 2 else tone
            sf.write(root / f"clip {i}.{ext}", wave, rate)
            cell = ",".join(labels).replace('"', '""')
            rows.append(f'"clip {i}.{ext}","{cell}"')
        (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return root / "labels.csv"

    return make


@pytest.fixture(scope="session")
def audio_export(audio_run, tmp_path_factory):
    """The tiny sound model exported to ONNX (FP32 and INT8) and TFLite (FP32), verified on 96 windows; not
    strict: the tests read the verdicts (a 1-epoch model's INT8 file sits near its gate's SQNR and drop limits)."""
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("audio_export")
    report = export_checkpoint(audio_run.run_dir / "best.pt", ["tflite"], out, val_images=96, verbose=False,
                               strict=False)
    onnx = export_checkpoint(audio_run.run_dir / "best.pt", ["onnx"], out / "onnx", int8=True, calib_images=32,
                             val_images=96, verbose=False, strict=False)
    for f in (out / "onnx").glob("model*"):  # model.onnx, and model.int8.onnx (or .failed: a tiny model's INT8)
        f.rename(out / f.name)
    report.parity += onnx.parity
    return report


@pytest.fixture(scope="session")
def audio_onnx(audio_export):
    """The tiny sound model's FP32 ONNX file."""
    return audio_export.out_dir / "model.onnx"
