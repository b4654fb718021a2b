"""Terminal output: one rich console on stderr (stdout stays for --json), transient progress bars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from functools import lru_cache


@lru_cache(maxsize=1)
def console():
    """The stderr console; when stderr is not a terminal (a log file, CI), lines are 120 wide."""
    from rich.console import Console

    c = Console(stderr=True)
    if not c.is_terminal:
        c = Console(stderr=True, width=int(os.environ.get("COLUMNS", "120")))
    return c


def say(message: str) -> None:
    console().print(message, soft_wrap=True, highlight=False)


@contextlib.contextmanager
def progress(enabled: bool, label: str, total: int, show_loss: bool = False) -> Iterator[Callable[..., None]]:
    """A transient progress bar; yields ``advance(loss=None)``. Does nothing when not ``enabled``."""
    if not enabled or not console().is_terminal:  # no bars in logs: finished-step lines say enough
        yield lambda loss=None: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if show_loss:
        columns.append(TextColumn("loss {task.fields[loss]}"))
    bar = Progress(*columns, console=console(), transient=True)
    task = bar.add_task(label, total=total, loss="-")

    def advance(loss: float | None = None) -> None:
        bar.update(task, advance=1, **({"loss": f"{loss:.4f}"} if loss is not None else {}))

    with bar:
        yield advance
