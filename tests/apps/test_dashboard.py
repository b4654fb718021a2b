"""The kiosk's live dashboard in Chromium: it updates during a run and ends with the --report totals."""

from __future__ import annotations

import json

import pytest

from edgekit.apps.dashboard import Dashboard
from edgekit.apps.kiosk import run_kiosk
from edgekit.cli import main

STATE_KEYS = {"totals", "visitors_now", "faces_in_view", "fps", "latency_ms", "processed_frames", "notices",
              "warnings", "heads", "model", "source", "final"}


def _flat(d: dict, prefix: str = "totals") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}.{k}"))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def test_dashboard_shows_the_report_totals_live(face_model, kiosk_video, tmp_path, chromium):
    from edgekit.runtime.web import shared_browser

    board = Dashboard(0)
    url = board.start()
    page = shared_browser().page()
    try:
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent === 'live'", timeout=30000)
        sent: list[dict] = []

        def publish(state: dict) -> None:
            sent.append(state)
            board.publish(state)

        run_kiosk(face_model, str(kiosk_video), headless=True, out=tmp_path / "k.mp4", report=tmp_path / "day",
                  threads=2, verbose=False, publish=publish)
        board.stop()
        page.wait_for_function("window.dashboard.ended", timeout=30000)
        shown = {el.get_attribute("data-key"): json.loads(el.get_attribute("data-value"))
                 for el in page.locator("[data-key^='totals.']").all()}
        status = page.locator("#status").inner_text()
        updates = page.evaluate("window.dashboard.updates")
        page.screenshot(path=str(tmp_path / "dashboard.png"))
    finally:
        page.close()
    totals = json.loads((tmp_path / "day.json").read_text())["totals"]
    assert shown == _flat(totals) and totals["visitors"] == 1
    assert status == "kiosk stopped: final totals" and updates >= 2 and sent[-1]["final"]
    assert len(sent) >= 2 and not any(s["final"] for s in sent[:-1])  # states came while the kiosk ran
    for state in sent:  # numbers and notices only: no face image, crop or box
        assert set(state) == STATE_KEYS and len(json.dumps(state)) < 4000 and "box" not in json.dumps(state)


def test_dashboard_serves_the_latest_state_to_a_late_page(tmp_path):
    import urllib.request

    board = Dashboard(0)
    url = board.start()
    try:
        state = {"totals": {"visitors": 3}, "final": False}
        board.publish(state)
        for _ in range(50):
            with urllib.request.urlopen(url + "state.json") as r:
                got = json.loads(r.read())
            if got:
                break
        assert got == state
        with urllib.request.urlopen(url + "events") as r:  # a page that connects now gets it at once
            assert r.readline().decode().strip() == f"data: {json.dumps(state)}"
    finally:
        board.stop()


def test_cli_says_where_the_dashboard_is(face_model, kiosk_video, tmp_path, capsys):
    assert main(["demo", "kiosk", "-m", str(face_model), "--source", str(kiosk_video), "--headless", "--out",
                 str(tmp_path / "k.mp4"), "--max-frames", "6", "--dashboard", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "dashboard: http://127.0.0.1:" in err and "(bound to 127.0.0.1: this machine only; numbers only" in err


def test_dashboard_port_in_use_is_one_line(capsys):
    board = Dashboard(0)
    url = board.start()
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        assert main(["demo", "kiosk", "-m", "x.onnx", "--dashboard", port]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: cannot serve on 127.0.0.1:{port}")
    finally:
        board.stop()


@pytest.mark.parametrize("host", ["localhost"])
def test_dashboard_binds_where_asked(host):
    board = Dashboard(0, host)
    try:
        assert board.start().startswith(f"http://{host}:")
    finally:
        board.stop()
