"""The run-folder contract: what a finished run folder holds, and when it can be reused.

A run folder is ``<out>/<stage>/<name>/`` (:attr:`~edgekit.config.RunConfig.run_dir`). It is
finished when it holds :data:`RUN_FILES` and its ``history.json`` has one record per configured
epoch; a finished run whose ``config.yaml`` is exactly the config at hand is reused instead of
trained again (quickstart, the teacher of a distillation, the report's sample-efficiency sweep).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.config import RunConfig

RUN_FILES = ("config.yaml", "history.json", "card.json", "best.pt")


def missing(run_dir: Path) -> list[str]:
    """The files of :data:`RUN_FILES` that ``run_dir`` lacks (empty for a complete run folder)."""
    return [f for f in RUN_FILES if not (run_dir / f).is_file()]


def finished(cfg: RunConfig) -> bool:
    """True when ``cfg.run_dir`` holds a completed run of exactly this config (so it can be reused)."""
    run = cfg.run_dir
    if missing(run):
        return False
    try:
        history = json.loads((run / "history.json").read_text())
        return (run / "config.yaml").read_text() == cfg.to_yaml() and len(history) == cfg.train.epochs
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
