"""The kiosk's live dashboard: a page that updates while the kiosk runs (``--dashboard PORT``).

The kiosk calls ``publish(state)`` (``KioskOptions.publish``) whenever its analytics panel changes
and once at the end; :func:`live_state` builds that state from the same :func:`~edgekit.apps.analytics.totals`
the ``--report`` JSON holds, so the final numbers on the page are the report's. The server
(aiohttp, in a thread) sends each state to every open page as a server-sent event; a page that
connects late gets the latest one. Only numbers and notices travel: no face image, crop or box
ever reaches the page. It binds to 127.0.0.1 unless another address is given on purpose.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekit.errors import require

PAGE = Path(__file__).with_name("dashboard")
LOCAL = "127.0.0.1"


def live_state(kiosk: Any, summary: dict[str, Any], final: bool = False, fps: float | None = None) -> dict[str, Any]:
    """What the page shows: ``summary`` (``analytics.totals``), who is in view, speed and the notices."""
    tracker = kiosk.tracker
    return {
        "totals": summary,
        "visitors_now": sum(1 for t in tracker.active if tracker.is_visitor(t)),
        "faces_in_view": len(tracker.active),
        "fps": round(float(kiosk.fps if fps is None else fps), 2),
        "latency_ms": round(float(kiosk.latency), 3),
        "processed_frames": kiosk.processed,
        "notices": [*(kiosk.notice or []), *kiosk.checks.notice()],
        "warnings": kiosk.checks.warnings(),
        "heads": [h.name for h in kiosk.heads],
        "model": kiosk.predictor.path.name,
        "source": kiosk.src.name,
        "final": final,
    }


class Dashboard:
    """``start()`` -> the page's address; ``publish(state)`` from any thread; ``stop()`` ends the streams."""

    def __init__(self, port: int = 8080, host: str = LOCAL) -> None:
        from edgekit.runtime.webserve import ServerThread

        self.host, self.port = host, port
        self.state: dict[str, Any] | None = None
        self.clients: set[asyncio.Queue] = set()
        self.server = ServerThread(self._app(), host, port)

    def start(self) -> str:
        return self.server.start()

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, state: dict[str, Any]) -> None:
        """Send ``state`` to every open page (thread-safe; a slow page only misses intermediate states)."""
        self.server.call(self._send, json.dumps(state, default=_plain))

    def stop(self, drain_s: float = 2.0) -> None:
        """Tell the pages the kiosk ended, give them ``drain_s`` to read it, stop the server."""
        done = threading.Event()
        self.server.call(self._send, None, done)
        done.wait(drain_s)
        self.server.stop()

    # -- on the server's loop ------------------------------------------------------------------
    def _send(self, text: str | None, done: threading.Event | None = None) -> None:
        if text is not None:
            self.state = json.loads(text)
        for q in list(self.clients):
            if q.full():
                q.get_nowait()
            q.put_nowait(text)
        if done is not None:
            asyncio.get_running_loop().call_later(0.2 if self.clients else 0, done.set)

    def _app(self):
        web = require("aiohttp.web", "web")

        async def page(request):
            name = request.match_info.get("name") or "index.html"
            path = PAGE / name
            if name not in ("index.html", "dashboard.js", "dashboard.css"):
                raise web.HTTPNotFound()
            kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}[path.suffix]
            return web.FileResponse(path, headers={"Content-Type": f"{kind}; charset=utf-8",
                                                   "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

        async def state(request):
            return web.json_response(self.state or {})

        async def events(request):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            q: asyncio.Queue = asyncio.Queue(maxsize=2)
            self.clients.add(q)
            try:
                if self.state is not None:
                    await resp.write(f"data: {json.dumps(self.state)}\n\n".encode())
                while True:
                    try:
                        text = await asyncio.wait_for(q.get(), 15)
                    except asyncio.TimeoutError:
                        await resp.write(b": keep-alive\n\n")
                        continue
                    if text is None:
                        await resp.write(b"event: end\ndata: {}\n\n")
                        break
                    await resp.write(f"data: {text}\n\n".encode())
            except (ConnectionResetError, asyncio.CancelledError):
                pass
            finally:
                self.clients.discard(q)
            return resp

        app = web.Application()
        app.router.add_get("/events", events)
        app.router.add_get("/state.json", state)
        app.router.add_get("/", page)
        app.router.add_get("/{name}", page)
        return app


def serve_dashboard(port: int, host: str = LOCAL, say: Callable[[str], Any] = print) -> Dashboard:
    """Start a :class:`Dashboard` and say where it is and who can open it."""
    from edgekit.runtime.webserve import reach

    board = Dashboard(port, host)
    url = board.start()
    say(f"dashboard: {url} (bound to {host}: {reach(host)}; numbers only, no face image)")
    return board


@contextmanager
def live_dashboard(port: int | None, host: str = LOCAL, say: Callable[[str], Any] = print
                   ) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """``KioskOptions.publish`` of a dashboard served on ``port`` while the block runs (None: no dashboard)."""
    if port is None:
        yield None
        return
    board = serve_dashboard(port, host, say)
    try:
        yield board.publish
    finally:
        board.stop()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
