"""Web bundles: ``edgekit export --target web`` -> ``model.web/``, a folder any static host can serve.

A bundle wraps the ONNX file of its precision (the exporter makes the ONNX target first, see
``formats.with_wrapped``) and holds everything a browser needs, offline:

- the model: the ONNX file itself. onnxruntime's ORT format (``ort_format=True``: used when smaller)
  was measured and is off by default: it stores the graph after the provider-independent rewrites
  only, and neither onnxruntime-web nor native onnxruntime re-applies the fusions at load, so the
  file is 3-18% smaller but slower: a tiny INT8 model ran 0.43 ms instead of 0.14 ms in Chromium
  (195 unfused QDQ nodes instead of 58 QLinear ones), the FP32 one 0.35 instead of 0.335 ms;
- ``card.json`` (preprocessing, heads, provenance) and ``check.json``: the card's golden inputs
  (validation images at the input size) with PyTorch's outputs on them;
- onnxruntime-web's JavaScript and WebAssembly (``ort/``): fetched once with ``npm pack`` at the
  pinned version, checked against the pinned integrity, cached in ``~/.cache/edgekit``; never a CDN;
- the page (``index.html`` + JS modules, no build step) and ``_headers`` for static hosts that read
  it (the page's WebAssembly threads need COOP/COEP; ``edgekit demo web`` sends them).

:func:`check_bundle` runs the page's check mode in Chromium and compares its outputs with native
onnxruntime on the same inputs and with the PyTorch reference.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.atomic import write_json, write_text
from edgekit.card import ModelCard
from edgekit.errors import ConfigError, DependencyError, EdgekitError, first_line

ORT_WEB = "1.31.1"
ORT_WEB_INTEGRITY = ("sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==")
# two builds: WebAssembly only (smaller, starts faster), and WebGPU + WebNN + WebAssembly ("jsep")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.min.mjs", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm")
PAGE = Path(__file__).with_name("webpage")
PAGE_FILES = ("index.html", "style.css", "app.js", "engine.js", "preprocess.js", "resize.js", "heads.js", "check.js")


class WebBundleError(EdgekitError):
    """A web bundle cannot be made or checked."""


# -- onnxruntime-web, from the npm registry once -------------------------------------------------------


def cache_dir() -> Path:
    """``EDGEKIT_CACHE``, else ``$XDG_CACHE_HOME/edgekit`` (``~/.cache/edgekit``)."""
    if os.environ.get("EDGEKIT_CACHE"):
        return Path(os.environ["EDGEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"


def integrity_of(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def onnxruntime_web(version: str = ORT_WEB, integrity: str | None = ORT_WEB_INTEGRITY) -> Path:
    """The folder holding onnxruntime-web's browser files (:data:`ORT_FILES`), fetched on first use.

    ``npm pack onnxruntime-web@VERSION`` downloads the package tarball (no install scripts run); offline,
    put that tarball in the cache folder yourself. The tarball must match ``integrity`` (the pinned one for
    the pinned version)."""
    root = cache_dir() / "onnxruntime-web"
    folder, done = root / version, root / version / ".complete"
    if done.is_file() and all((folder / f).is_file() for f in ORT_FILES):
        return folder
    tgz = root / f"onnxruntime-web-{version}.tgz"
    if not tgz.is_file():
        _npm_pack(version, root)
    got = integrity_of(tgz)
    if integrity is not None and got != integrity:
        raise WebBundleError(f"{tgz} does not match onnxruntime-web {version}'s pinned integrity ({got[:23]}... != "
                             f"{integrity[:23]}...); delete it and export again")
    tmp = root / f".{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tgz) as tar:
        for name in ORT_FILES:
            member = tar.getmember(f"package/dist/{name}")
            with tar.extractfile(member) as src, open(tmp / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    write_text(tmp / ".complete", f"onnxruntime-web {version} {got}\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _npm_pack(version: str, dest: Path) -> None:
    npm = shutil.which("npm")
    spec = f"onnxruntime-web@{version}"
    if npm is None:
        raise DependencyError(f"the web target fetches {spec} once with npm, which is not installed: apt-get install "
                              f"npm (or put the tarball of `npm pack {spec}` in {dest})")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest), "--silent"], capture_output=True,
                              text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise WebBundleError(f"npm pack {spec} timed out after 900 s") from None
    if proc.returncode != 0 or not (dest / f"onnxruntime-web-{version}.tgz").is_file():
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WebBundleError(f"npm pack {spec} failed: {why}")


# -- the bundle --------------------------------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same file system: no copy of the 15-30 MB WebAssembly files
    except OSError:
        shutil.copy2(src, dst)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_file(src: Path, folder: Path, ort_format: bool) -> dict[str, Any]:
    """Put the model in ``folder``: the ORT-format file when it is smaller, else a copy of the ONNX file."""
    onnx_bytes = src.stat().st_size
    info: dict[str, Any] = {"from": src.name, "source_sha256": _sha256(src), "onnx_bytes": onnx_bytes,
                            "ort_bytes": None}
    if ort_format:
        import onnxruntime as ort

        target = folder / "model.ort"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # provider-independent rewrites
        opts.optimized_model_filepath = str(target)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
            info["ort_bytes"] = target.stat().st_size
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; the ONNX file is used
            info["ort_error"] = first_line(exc, 200)
            target.unlink(missing_ok=True)
        if info["ort_bytes"] is not None and info["ort_bytes"] < onnx_bytes:
            return {**info, "file": "model.ort", "format": "ort", "bytes": info["ort_bytes"]}
        target.unlink(missing_ok=True)
    shutil.copy2(src, folder / "model.onnx")
    return {**info, "file": "model.onnx", "format": "onnx", "bytes": onnx_bytes}


def make_bundle(src: str | Path, out: str | Path, check: dict[str, Any] | None = None, card: ModelCard | None = None,
                ort_format: bool = False) -> Path:
    """Write the bundle ``out`` around the ONNX file ``src`` (replacing ``out`` whole, or leaving it as it was)."""
    from edgekit.runtime.metadata import read_card

    src, out = Path(src), Path(out)
    card = card or read_card(src)
    if card.input.frames:
        raise ConfigError(f"{src} is a clip model ({card.input.frames} frames per input); the web page takes single "
                          "images")
    runtime = onnxruntime_web()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "ort").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copy2(PAGE / name, tmp / name)
    for name in ORT_FILES:
        _link_or_copy(runtime / name, tmp / "ort" / name)
    write_text(tmp / "ort" / "NOTICE.txt", f"onnxruntime-web {ORT_WEB} (MIT License, Copyright (c) Microsoft "
               f"Corporation), from the npm registry; tarball integrity {ORT_WEB_INTEGRITY}\n")
    model = _model_file(src, tmp, ort_format)
    web = {"onnxruntime_web": ORT_WEB, "integrity": ORT_WEB_INTEGRITY, "wraps": src.name, "model_file": model["file"],
           "model_format": model["format"]}
    write_text(tmp / "card.json", card.derive(format="web", web=web).to_json())
    if check:  # the page judges its GPU / WebNN outputs on these with the gate edgekit uses (export/gates.py)
        from edgekit.export.gates import gate_for

        write_json(tmp / "check.json", {**check, "gate": gate_for(card.provenance.get("precision", "fp32")).to_dict()})
    write_text(tmp / "_headers", "/*\n" + "".join(f"  {k}: {v}\n" for k, v in _isolation().items()))
    files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json(tmp / "manifest.json", {
        "edgekit": __version__, "model": model, "precision": card.provenance.get("precision", "fp32"),
        "onnxruntime_web": {"version": ORT_WEB, "integrity": ORT_WEB_INTEGRITY, "source": "npm registry"},
        "check": {"inputs": len(check["inputs"]), "source": check.get("source")} if check else None,
        "files": files})
    for p in tmp.rglob("*"):  # readable by a web server running as another user
        p.chmod(0o755 if p.is_dir() else 0o644)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _isolation() -> dict[str, str]:
    from edgekit.runtime.webserve import ISOLATION_HEADERS

    return ISOLATION_HEADERS


def bundle_for(model: str | Path, out: str | Path | None = None) -> Path:
    """A bundle to serve: ``model`` itself when it is one, else the bundle around the ONNX file ``model``
    (``out``, default beside it: ``model.int8.onnx`` -> ``model.int8.web``), remade when the ONNX file changed."""
    from edgekit.runtime.metadata import read_card

    model = Path(model)
    if model.suffix == ".web":
        if not (model / "index.html").is_file() or not (model / "manifest.json").is_file():
            raise ConfigError(f"{model} is not a web bundle (no index.html / manifest.json)")
        return model
    if model.suffix.lower() != ".onnx" or not model.is_file():
        raise ConfigError(f"{model}: expected an .onnx file edgekit exported or a .web bundle")
    out = Path(out) if out else model.with_suffix(".web")
    manifest = out / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        if made["model"].get("source_sha256") == _sha256(model) and made["onnxruntime_web"]["version"] == ORT_WEB:
            return out
    card = read_card(model)
    return make_bundle(model, out, check=golden_check(card), card=card)


# -- check inputs ------------------------------------------------------------------------------------


def golden_check(card: ModelCard) -> dict[str, Any] | None:
    """The card's golden inputs (PNG at the model's input size) and PyTorch's outputs on them, when it has
    image ones (:mod:`edgekit.export.golden`)."""
    from edgekit.runtime.golden import GOLDEN_KIND_IMAGES

    golden = card.golden
    if isinstance(golden, dict) and golden.get("kind") == GOLDEN_KIND_IMAGES and golden.get("inputs"):
        return {"kind": GOLDEN_KIND_IMAGES, "inputs": list(golden["inputs"]), "outputs": golden.get("outputs") or {},
                "source": f"the card's golden inputs ({golden.get('source', 'validation images')})"}
    return None


# -- the export target ---------------------------------------------------------------------------------


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """The bundle of ``precision`` around the ONNX file of the same precision made by this export."""
    from edgekit import formats
    from edgekit.runtime.metadata import read_card

    path = Path(path)
    src = path.parent / formats.FORMATS["onnx"].file(precision)
    if not src.is_file():
        raise WebBundleError(f"not made: the ONNX file it wraps ({src.name}) was not made")
    wrapped = read_card(src)
    if wrapped.input.frames:
        raise ConfigError(f"{wrapped.name} is a clip model ({wrapped.input.frames} frames per input); the web page "
                          "takes single images")
    if wrapped.provenance.get("exported") != card.provenance.get("exported"):
        raise WebBundleError(f"not made: {src.name} is left from another export")
    return make_bundle(src, path, check=golden_check(wrapped), card=wrapped)


# -- the page's check mode against native onnxruntime ------------------------------------------------


def native_predictor(path: str | Path, threads: int | None = None):
    """The bundle's own model file (``.onnx`` or ``.ort``) in native onnxruntime, with the bundle's card."""
    from edgekit.runtime.backends import OnnxBackend
    from edgekit.runtime.predictor import Predictor
    from edgekit.runtime.web import bundle_card

    path = Path(path)
    model = path / json.loads((path / "manifest.json").read_text())["model"]["file"]
    return Predictor(OnnxBackend(model, device="cpu", threads=threads), bundle_card(path), model)


def check_bundle(path: str | Path, page=None, threads: int | None = None,
                 overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """The page's check mode (its own decoding, preprocessing and model on ``check.json``'s inputs) against
    native onnxruntime on the same inputs and against PyTorch's outputs stored with them, each judged with
    the gate of the bundle's precision (FP32: relative error <= 1e-4; FP16 / INT8: SQNR and top-1 agreement,
    :mod:`edgekit.export.gates`, ``overrides`` applied).

    ``page``: a :class:`~edgekit.runtime.web.WebPage` already open on the bundle (else one is opened, on
    WebAssembly)."""
    from edgekit.export.compare import compare_outputs
    from edgekit.export.gates import gate_for, judge
    from edgekit.runtime.backends import check_threads
    from edgekit.runtime.golden import decode_png
    from edgekit.runtime.web import WebPage, bundle_card

    path = Path(path)
    card = bundle_card(path)
    if not (path / "check.json").is_file():  # nothing to run the page on: no pass
        return {"passed": False, "failures": ["the bundle has no check inputs (check.json), so its page was not "
                                              "checked: export it with edgekit export --target web"]}
    check = json.loads((path / "check.json").read_text())
    own = page is None
    page = page or WebPage(path, "wasm", check_threads(threads))
    try:
        result = page.call("check")
        info = page.info
    finally:
        if own:
            page.close()
    if "error" in result:
        return {"passed": False, "failures": [f"the page's check failed: {result['error']}"]}
    got = {h: np.asarray(v, np.float32) for h, v in result["outputs"].items()}
    native = native_predictor(path, threads)
    images = [decode_png(b) for b in check["inputs"]]  # BGR, as OpenCV decodes
    expected = native.run(native.preprocess(images, color="BGR"))
    out: dict[str, Any] = {"inputs": len(images), "source": check.get("source"),
                           "browser": {k: info.get(k) for k in ("backend", "threads", "fallback", "runtime")},
                           "native": {"runtime": "onnxruntime", "file": native.path.name},
                           "vs_native": compare_outputs(card, expected, got)}
    refs = {h: np.asarray(v, np.float32) for h, v in (check.get("outputs") or {}).items()}
    failures = []
    if set(refs) >= set(card.head_names):
        out["vs_reference"] = compare_outputs(card, refs, got)
    else:  # PyTorch's outputs are what the page is proven against: without them for every head, no pass
        failures.append(f"vs reference: check.json has PyTorch's outputs for {sorted(refs) or 'no head'}, the "
                        f"bundle's heads are {card.head_names}")
    gate = gate_for(card.provenance.get("precision", "fp32"), overrides)
    out["gate"] = gate.to_dict()
    for against in ("vs_native", "vs_reference"):
        if against in out:
            failures += [f"{against.replace('_', ' ')}: {f}" for f in judge({"heads": out[against]}, gate)["failures"]]
    out["failures"] = failures
    out["passed"] = not failures
    return out


def verify_more(path: Path, backend, entry: dict[str, Any], overrides: dict[str, float | None] | None = None
                ) -> dict[str, Any]:
    """After :func:`edgekit.export.verify.verify_file` judged a bundle's outputs: what ran in Chromium, and its
    page's own decoding and preprocessing (:func:`check_bundle`); a page check that did not pass fails it."""
    entry["browser"] = backend.info
    entry["page_check"] = page = check_bundle(path, backend.page, overrides=overrides)
    if page["passed"] is not True:  # a page check that did not run proves nothing: the bundle fails
        entry.update(passed=False, verdict="failed")
        entry["gate_failures"] = [*entry["gate_failures"], *(f"page check: {f}" for f in page["failures"])]
    return entry


def describe_check(entry: dict[str, Any]) -> str:
    """One line for a verified bundle: what ran in Chromium, and its page check against native and PyTorch."""
    b, check = entry["browser"], entry.get("page_check") or {}
    ran = f"in Chromium: {b['backend']}" + (f", {b['threads']} thread(s)" if b["backend"] == "wasm" else "")
    if "inputs" not in check:  # the page's check could not run
        return f"{ran}; page check FAILED: {'; '.join(check.get('failures') or ['not run'])}"

    def worst(key: str) -> str:
        stats = check.get(key) or {}
        return f"{max(s['rel'] for s in stats.values()):.1e}" if stats else "n/a"

    verdict = "ok" if check["passed"] else "FAILED: " + "; ".join(check["failures"])
    return (f"{ran}; page check on {check['inputs']} golden input(s) {verdict}: relative error vs native "
            f"onnxruntime {worst('vs_native')}, vs PyTorch {worst('vs_reference')}")
