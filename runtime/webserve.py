"""Serving web pages locally: a web bundle (``edgekit demo web``), and any aiohttp app in a thread.

A bundle's page runs onnxruntime-web, whose WebAssembly threads need a cross-origin isolated page
(``SharedArrayBuffer``): every response carries COOP ``same-origin`` and COEP ``require-corp``.
Only files inside the bundle folder are served, with the MIME types browsers insist on (``.mjs``
as JavaScript, ``.wasm`` as ``application/wasm``). The address is ``127.0.0.1`` unless the caller
binds another one on purpose. aiohttp (``pip install 'edgekit[web]'``) is imported when a server starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, require

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
HEADERS = {**ISOLATION_HEADERS, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
           "Referrer-Policy": "no-referrer"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png", ".txt": "text/plain",
         ".onnx": "application/octet-stream", ".ort": "application/octet-stream"}
LOCAL = "127.0.0.1"


def reach(host: str) -> str:
    """Who can open a page served on ``host`` (said when a server starts)."""
    return "this machine only" if host in (LOCAL, "localhost", "::1") else f"every machine that can reach {host}"


def bundle_app(folder: str | Path):
    """An aiohttp app serving ``folder`` (``/`` is its ``index.html``) with the isolation headers."""
    web = require("aiohttp.web", "web")
    root = Path(folder).resolve()
    if not (root / "index.html").is_file():
        raise ConfigError(f"{folder} is not a web bundle (no index.html); make one with edgekit export --target web")

    async def handle(request):
        rel = request.match_info["path"] or "index.html"
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file() or path.name.startswith("."):
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": TYPES.get(path.suffix,
                                                                                     "application/octet-stream")})

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    return app


class ServerThread:
    """An aiohttp app served from a background thread: ``url`` once started, ``stop()`` to end it."""

    def __init__(self, app, host: str = LOCAL, port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="edgekit-web", daemon=True)

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise ConfigError(f"cannot serve on {self.host}:{self.port}: {self._error}") from None
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _main(self) -> None:
        web = require("aiohttp.web", "web")
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        try:
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]  # the port the OS gave for port 0
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the server's loop (thread-safe)."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def serve_bundle(folder: str | Path, host: str = LOCAL, port: int = 8000, on_start: Callable[[str], None] = print,
                 stop: threading.Event | None = None) -> None:
    """Serve a bundle until Ctrl-C (or ``stop`` is set); ``on_start(url)`` says where."""
    server = ServerThread(bundle_app(folder), host, port)
    on_start(server.start())
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
