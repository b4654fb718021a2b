"""The ``.web`` backend: a web bundle's model run by its own page in headless Chromium.

``load("model.web")`` serves the bundle on 127.0.0.1 (cross-origin isolated, see
:mod:`edgekit.runtime.webserve`), opens its page in Chromium (:mod:`edgekit.runtime.browser`) with
the backend and thread count asked for, and sends each preprocessed batch to the page's
onnxruntime-web session; the outputs come back per head. ``backend.threads`` and
``backend.device`` are what the page reports after its session started (onnxruntime-web drops to
one thread when the page is not cross-origin isolated; ``auto`` falls back from WebGPU to
WebAssembly and ``backend.fallback`` says why). One Chromium serves every bundle a process opens.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import ModelCard
from edgekit.errors import DeviceError
from edgekit.runtime.backend import Backend, ModelFileError, check_threads

DEVICES = {"auto": "auto", "cpu": "wasm", "wasm": "wasm", "webgpu": "webgpu", "webnn": "webnn"}
CHUNK_BYTES = 8 << 20  # largest batch sent to the page in one message
_BROWSERS: dict[bool, Any] = {}


def shared_browser(gpu: bool = False):
    """One headless Chromium per process (and per GPU setting), closed at exit."""
    if gpu not in _BROWSERS:
        from edgekit.runtime.browser import Browser

        _BROWSERS[gpu] = Browser(gpu=gpu)
        atexit.register(_close_browsers)
    return _BROWSERS[gpu]


def _close_browsers() -> None:
    while _BROWSERS:
        _, browser = _BROWSERS.popitem()
        with contextlib.suppress(Exception):  # the process is ending
            browser.close()


def bundle_card(path: str | Path) -> ModelCard:
    """The card of a bundle (its ``card.json``)."""
    f = Path(path) / "card.json"
    if not f.is_file():
        raise ModelFileError(f"{path} is not a web bundle (no card.json); make one with edgekit export --target web")
    return ModelCard.from_json(f.read_text())


class WebPage:
    """A bundle's page open in Chromium, its model loaded: ``info`` is what the page says ran."""

    def __init__(self, path: str | Path, want: str = "auto", threads: int | None = None, query: str = "",
                 browser=None, timeout_s: float = 180.0) -> None:
        from edgekit.runtime.webserve import ServerThread, bundle_app

        self.path = Path(path)
        self.server = ServerThread(bundle_app(self.path))
        self.url = self.server.start()
        self.browser = browser or shared_browser(gpu=want in ("webgpu", "webnn"))
        self.page = self.browser.page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"[:500]))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"[:500]))
        params = f"backend={want}" + (f"&threads={threads}" if threads else "") + (f"&{query}" if query else "")
        self.page.goto(f"{self.url}index.html?{params}")
        try:
            self.page.wait_for_function("window.edgekitState && window.edgekitState.status !== 'loading'",
                                        timeout=timeout_s * 1000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: say what the page printed
            self.close()
            raise ModelFileError(f"{self.path}: the page did not start within {timeout_s:.0f} s "
                                 f"({'; '.join(self.console[-3:]) or 'no console output'})") from None
        state = self.state()
        if state["status"] != "ready":
            self.close()
            raise ModelFileError(f"{self.path}: {state.get('error')}")
        self.info: dict[str, Any] = state["info"]

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("() => { const s = window.edgekitState; "
                                  "return {status: s.status, error: s.error, info: s.info, frames: s.frames}; }")

    def call(self, method: str, arg: Any = None) -> Any:
        return self.page.evaluate(f"a => window.edgekit.{method}(a)", arg)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.page.close()
        self.server.stop()


def encode(x: np.ndarray) -> dict[str, Any]:
    """A batch as the page takes it: its dtype name, base64 bytes and dims."""
    x = np.ascontiguousarray(x)
    return {"type": x.dtype.name, "b64": base64.b64encode(x.tobytes()).decode(), "dims": list(x.shape)}


class WebBackend(Backend):
    name = "web"

    @classmethod
    def card_text(cls, path: Path, session: Any = None) -> str | None:
        """Its ``card.json``."""
        card = Path(path) / "card.json"
        return card.read_text() if card.is_file() else None

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        if device not in DEVICES:
            raise DeviceError(f"a web bundle runs on {', '.join(DEVICES)}, not '{device}'")
        self.card = bundle_card(path)
        want = DEVICES[device]
        self.page = WebPage(path, want, check_threads(threads))
        info = self.page.info
        self.info = info
        self.device = info["backend"]  # wasm | webgpu | webnn: what ran, not what was asked
        # onnxruntime-web's env.wasm.numThreads after its start: 1 when the page is not cross-origin isolated
        self.threads, self.threads_from = int(info["threads"]), "onnxruntime-web"
        self.fallback = info.get("fallback") or []
        batch = self.card.provenance.get("batch")
        self.batch = int(batch) if isinstance(batch, int) else None
        self.output_names = self.card.head_names
        self.input_dtype = np.dtype(self.card.input.dtype if self.card.input.quant else "float32")

    def order_outputs(self, heads: list[str]) -> None:  # the page returns heads in card order
        pass

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        per = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
        parts = [self._run(x[i: i + per]) for i in range(0, len(x), per)]
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.page.call("runTensor", encode(x))
        return [np.frombuffer(base64.b64decode(out[h]["b64"]), np.float32).reshape(len(x), out[h]["width"])
                for h in self.card.head_names]

    def close(self) -> None:
        self.page.close()

    def describe(self) -> str:
        """``wasm, 2 threads`` / ``webgpu`` (+ the fallback reason)."""
        text = f"{self.device}, {self.threads} thread{'s' if self.threads != 1 else ''}" if self.device == "wasm" \
            else self.device
        return text + (f" (fell back: {'; '.join(self.fallback)})" if self.fallback else "")
