"""Web bundles in a real Chromium: the export, offline loading, the fake camera against native onnxruntime,
the backend reported and the fallback, the bench rows, and the errors a user can cause."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekit.cli import main


@pytest.fixture(scope="module")
def web_export(trained_run, chromium, ort_web, tmp_path_factory):
    """The tiny digits model exported to web bundles, FP32 and INT8, verified in Chromium."""
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("web_export")
    return export_checkpoint(trained_run.run_dir / "best.pt", targets=["web"], out_dir=out, int8=True,
                             calib_images=32, verbose=False)


def test_export_wraps_the_onnx_file_and_checks_the_page(web_export):
    names = {a.path.name: a for a in web_export.artifacts}
    assert set(names) == {"model.onnx", "model.int8.onnx", "model.web", "model.int8.web"}
    for precision, bundle in (("fp32", "model.web"), ("int8", "model.int8.web")):
        entry = web_export.by_file(bundle)
        assert entry["passed"] and entry["precision"] == precision
        assert entry["browser"]["backend"] == "wasm" and entry["browser"]["cross_origin_isolated"] is True
        assert entry["browser"]["threads"] == entry["page_check"]["browser"]["threads"] >= 1
        check = entry["page_check"]
        card = json.loads((web_export.out_dir / bundle / "card.json").read_text())
        assert check["passed"] and check["inputs"] == len(card["golden"]["inputs"]) >= 1
        if precision == "fp32":  # the page's own decoding + preprocessing + model against native onnxruntime
            assert max(s["rel"] for s in check["vs_native"].values()) <= 1e-4
            assert max(s["rel"] for s in check["vs_reference"].values()) <= 1e-4
        manifest = json.loads((web_export.out_dir / bundle / "manifest.json").read_text())
        assert manifest["model"]["from"] == bundle.replace(".web", ".onnx") and manifest["precision"] == precision
        assert card["provenance"]["web"]["onnxruntime_web"] == manifest["onnxruntime_web"]["version"]


def test_bundle_files_are_whole_and_load_nothing_from_elsewhere(web_export, chromium):
    """Every file matches the manifest; the page loads and runs with every request outside its own server
    refused, and names no outside address (kiosks are offline)."""
    import hashlib

    from edgekit.runtime.web import WebPage

    bundle = web_export.out_dir / "model.web"
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    for f in bundle.glob("*.js"):
        assert not re.search(r"https?://", f.read_text()), f.name
    page = WebPage(bundle, "wasm", 1)
    try:
        outside: list[str] = []

        def refuse(route):
            outside.append(route.request.url)
            route.abort()

        page.page.route(re.compile(r"^(?!http://127\.0\.0\.1:).*"), refuse)
        page.page.reload()
        page.page.wait_for_function("window.edgekitState && window.edgekitState.status === 'ready'", timeout=60000)
        assert page.state()["info"]["threads"] == 1 and outside == []
    finally:
        page.close()


def _y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for f in frames:
            fh.write(b"FRAME\n" + cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    """A fake webcam: scikit-learn's 8x8 digits, enlarged onto 320x240 frames, three frames each."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frames = []
    for i in range(6):
        d = (digits.images[i] * 255 / 16).astype(np.uint8)
        big = cv2.resize(d, (200, 200), interpolation=cv2.INTER_NEAREST)
        f = np.zeros((240, 320, 3), np.uint8)
        f[20:220, 60:260] = big[:, :, None]
        frames += [f] * 3
    return _y4m(tmp_path_factory.mktemp("camera") / "digits.y4m", frames)


def test_camera_frames_match_native_onnxruntime(web_export, camera_clip, chromium):
    """The page on a (fake) camera: on each frame it saw, its input tensor is the Python runtime's, bit for
    bit, and its outputs are native onnxruntime's on that tensor (FP32: relative error <= 1e-4)."""
    from edgekit.runtime import load
    from edgekit.runtime.browser import Browser
    from edgekit.runtime.web import WebPage

    native = load(web_export.out_dir / "model.onnx", device="cpu")
    with Browser(camera=camera_clip) as browser:
        page = WebPage(web_export.out_dir / "model.web", "wasm", 2, query="source=camera&record=6", browser=browser)
        try:
            page.page.wait_for_function("window.edgekitState.records.length >= 6", timeout=60000)
            records = page.page.evaluate("window.edgekitState.records")
            shown = page.page.locator("#prediction li").first.inner_text()
        finally:
            page.close()
    labels = set()
    for rec in records:
        png = base64.b64decode(rec["png"].split(",", 1)[1])
        rgb = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert list(rgb.shape[1::-1]) == rec["size"] == [320, 240]
        x = native.preprocess(rgb, color="RGB")
        page_x = np.frombuffer(base64.b64decode(rec["input"]), np.float32).reshape(x.shape)
        assert np.array_equal(x, page_x)
        ref = native.run(x)
        for head, values in rec["outputs"].items():
            got = np.asarray(values, np.float32).reshape(ref[head].shape)
            assert np.abs(got - ref[head]).max() <= 1e-4 * np.abs(ref[head]).max()
        want = native.decode(ref, topk=3)[0]
        assert rec["result"]["digit"]["label"] == want["digit"]["label"]
        assert [c for c, _ in rec["result"]["digit"]["top"]] == [c for c, _ in want["digit"]["top"]]
        labels.add(want["digit"]["label"])
    # the page saw the camera move on (frames of different digits, so different inputs and answers), and shows
    # one of the answers it gave
    assert len({rec["input"] for rec in records}) >= 2 and len(labels) >= 2, labels
    assert shown.startswith("digit: ")


def test_webgpu_falls_back_to_webassembly_and_says_why(web_export, chromium, val_pngs):
    from edgekit.runtime import load

    model = load(web_export.out_dir / "model.int8.web", device="auto", threads=2)
    try:
        assert model.backend.device == "wasm" and model.backend.threads == 2
        assert model.backend.fallback and model.backend.fallback[0].startswith("webgpu: ")
        assert "fell back" in model.backend.describe()
        native = load(web_export.out_dir / "model.int8.onnx", device="cpu")
        files = [next(val_pngs.glob(f"*_{d}.png")) for d in (0, 3, 7)]  # three different digits
        x = native.preprocess([str(f) for f in files])
        got, want = model.run(x)["digit"], native.run(x)["digit"]
        assert got.shape == want.shape == (3, 10)
        # what the fallback ran gives native onnxruntime's answers on the same INT8 file (values, not shapes)
        from edgekit.export.gates import gate_for, judge
        from edgekit.export.verify import compare_outputs

        stats = compare_outputs(native.card, {"digit": want}, {"digit": got})
        assert judge({"heads": stats}, gate_for("int8"))["passed"] and (got.argmax(1) == want.argmax(1)).all(), stats
    finally:
        model.backend.close()


def test_a_page_with_wrong_outputs_says_so(web_export, tmp_path, chromium):
    """Golden reference outputs the model does not give (here: the bundle's, scaled): the page's start-up
    self-check reports the gate's failures, and edgekit's page check fails the bundle."""
    import shutil

    from edgekit.export.web import check_bundle
    from edgekit.runtime.web import WebPage

    bundle = tmp_path / "wrong.web"
    shutil.copytree(web_export.out_dir / "model.web", bundle)
    check = json.loads((bundle / "check.json").read_text())
    check["outputs"] = {h: (-3 * np.asarray(v)).tolist() for h, v in check["outputs"].items()}
    (bundle / "check.json").write_text(json.dumps(check))
    page = WebPage(bundle, "wasm", 1)
    try:
        assert page.info["backend"] == "wasm" and page.info["self_check"].startswith("failed: digit: relative error")
        result = check_bundle(bundle, page)
    finally:
        page.close()
    assert result["passed"] is False and result["failures"][0].startswith("vs reference: digit: relative error")
    assert max(s["rel"] for s in result["vs_native"].values()) <= 1e-4  # the model itself still matches native


@pytest.mark.slow  # SwiftShader compiles every WebGPU shader on the CPU: about 40 s
def test_webgpu_outputs_are_checked_before_they_are_served(web_export, chromium):
    """On a WebGPU adapter (SwiftShader's, the software one Chromium ships), each bundle either runs on WebGPU
    and passes its gate, or the page's self-check caught wrong outputs and fell back to WebAssembly, saying
    why; either way edgekit's page check passes. (Measured with onnxruntime-web 1.31.1 and Chromium 150:
    FP32 ran on WebGPU within 1e-6; the FP16 and INT8 files gave wrong outputs there and fell back.)"""
    from edgekit.export.web import check_bundle
    from edgekit.runtime.browser import Browser
    from edgekit.runtime.web import WebPage

    with Browser(gpu=True, args=("--enable-unsafe-swiftshader", "--use-webgpu-adapter=swiftshader")) as browser:
        bundle = web_export.out_dir / "model.web"
        page = WebPage(bundle, "webgpu", 2, browser=browser)
        try:
            if page.info["backend"] != "webgpu" and "adapter" in " ".join(page.info["fallback"]):
                pytest.skip(f"no WebGPU adapter here: {page.info['fallback']}")
            ran = {bundle.name: (page.info, check_bundle(bundle, page))}
        finally:
            page.close()
        bundle = web_export.out_dir / "model.int8.web"
        page = WebPage(bundle, "webgpu", 2, browser=browser)
        try:
            ran[bundle.name] = (page.info, check_bundle(bundle, page))
        finally:
            page.close()
    for name, (info, check) in ran.items():
        assert check["passed"], (name, check["failures"])
        if info["backend"] != "webgpu":
            assert info["backend"] == "wasm" and info["fallback"][0].startswith("webgpu: "), name
        else:
            assert info["self_check"] == "passed" and not info["fallback"], name


def test_bench_puts_the_browser_next_to_native_at_its_threads(web_export, tmp_path, chromium):
    assert main(["bench", str(web_export.out_dir / "model.web"), "--backend", "web", "--batch", "1", "--data", "none",
                 "--seconds", "0.2", "--threads", "1", "--out", str(tmp_path), "--quiet"]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    web, twin = rows
    assert web["backend"] == "web" and web["threads"] == 1 and web["device"] == "wasm" and web["p50_ms"] > 0
    assert twin["backend"] == "ort" and twin["twin_of"] == "web" and twin["p50_ms"] > 0
    assert Path(twin["file"]).parent.name == "model.web" and "1 thread(s)" in twin["note"]


def test_demo_web_bundles_an_onnx_file_and_serves_it(web_export, tmp_path):
    import threading
    import urllib.request

    from edgekit.export.web import bundle_for
    from edgekit.runtime.webserve import serve_bundle

    src = tmp_path / "m.onnx"
    src.write_bytes((web_export.out_dir / "model.onnx").read_bytes())
    bundle = bundle_for(src)
    assert bundle == tmp_path / "m.web" and bundle_for(src) == bundle  # made once, then reused
    urls, stop = [], threading.Event()
    t = threading.Thread(target=serve_bundle, args=(bundle, "127.0.0.1", 0, urls.append, stop))
    t.start()
    try:
        for _ in range(100):
            if urls:
                break
            threading.Event().wait(0.05)
        with urllib.request.urlopen(urls[0] + "ort/ort.wasm.min.mjs") as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urls[0] + "..%2fm.onnx")  # m.onnx is beside the bundle
    finally:
        stop.set()
        t.join(10)


@pytest.mark.parametrize(("argv", "message"), [
    (["demo", "web", "-m", "missing.onnx"], "expected an .onnx file edgekit exported or a .web bundle"),
    (["bench", "x.web", "--backend", "web", "--quiet"], "x.web is not a web bundle (no card.json)"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "bench":
        (tmp_path / "x.web").mkdir()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_npm_missing_or_a_wrong_tarball_says_what_to_do(tmp_path, monkeypatch):
    from edgekit.errors import DependencyError
    from edgekit.export import web

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(web.shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match="apt-get install npm"):
        web.onnxruntime_web()
    (tmp_path / "onnxruntime-web").mkdir()
    (tmp_path / "onnxruntime-web" / f"onnxruntime-web-{web.ORT_WEB}.tgz").write_bytes(b"not the package")
    with pytest.raises(web.WebBundleError, match="pinned integrity"):
        web.onnxruntime_web()
