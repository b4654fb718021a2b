"""``edgekit diff FILE``: the first layer where a model file stops agreeing with PyTorch (:mod:`edgekit.export.diff`).

Registered on the main app by :mod:`edgekit.cli`; like it, this imports only typer at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

SHOWN = 12  # rows printed around the verdict (diff.json has them all)

EPILOG = ("Examples:\n\n"
          "  edgekit diff runs/export/m/model.int8.onnx             # against the checkpoint its card names\n\n"
          "  edgekit diff model.tflite --against best.pt --data photos/val\n\n"
          "  edgekit diff model.int8.onnx --against model.onnx      # INT8 against the FP32 file\n\n"
          "  edgekit diff model.xml --json                          # the report as JSON on stdout\n\n"
          "  edgekit diff model.int8.tflite --on pi                 # the file runs on the device, PyTorch here")


def diff_command(model: Annotated[Path, typer.Argument(help="Model file: .onnx, .tflite or .xml (OpenVINO).")],
                 against: Annotated[Path | None, typer.Option(
                     help="Reference: an edgekit checkpoint (.pt, default: the one the file's card names) or another "
                          "model file of the same model.")] = None,
                 data: Annotated[str | None, typer.Option(
                     help="Images (a folder or a file) to compare on, instead of the card's golden inputs.")] = None,
                 images: Annotated[int, typer.Option(help="Inputs compared (at most).")] = 4,
                 out: Annotated[Path | None, typer.Option(
                     help="Folder for diff.json and diff.png (default: FILE.diff beside the file).")] = None,
                 on: Annotated[str | None, typer.Option("--on", help="Run FILE on a device over SSH (a name or "
                                                                     "ssh://user@host, set up with edgekit device "
                                                                     "setup); the reference runs here.")] = None,
                 json_: Annotated[bool, typer.Option("--json", help="The report as JSON on stdout.")] = False,
                 all_rows: Annotated[bool, typer.Option("--all", help="Print every layer, not those around the "
                                                                      "first diverging one.")] = False) -> None:
    """Per layer, in execution order: SQNR, cosine and max abs of the file's activations against PyTorch's (or
    another file's); names the first layer where the error jumps. Writes diff.json and diff.png."""
    import json

    from edgekit.errors import ConfigError
    from edgekit.export.diff import diff

    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    if on is not None:
        from edgekit.recipes.on_device import diff_on

        report = diff_on(model, on, against, data, images, out)
    else:
        report = diff(model, against, data, images, out)
    if json_:
        typer.echo(json.dumps(report, default=str))
    else:
        print_report(report, all_rows)


def where_text(m: dict[str, Any]) -> str:
    """``arm (device, ssh://...): qemu-user aarch64 (cortex-a76) on AMD EPYC, aarch64, EMULATED; ARM dot-product``"""
    where = "this host" if m["where"] == "host" else f"device, {m['where']}"
    emulated = ", EMULATED" if m.get("emulated") else ""
    return (f"{m['machine']} ({where}): {m.get('cpu')}, {m.get('arch')}{emulated}; "
            f"{', '.join(m.get('cpu_features') or []) or 'no listed CPU features'}")


def _db(v: Any) -> str:
    if v is None:
        return "exact"
    return "non-finite" if v == float("-inf") else f"{v:.1f}"


def print_report(report: dict[str, Any], all_rows: bool = False) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgekit.console import console, say

    say(f"{escape(Path(report['file']).name)} ({escape(report['file_runner'])}) vs {escape(report['against'])} "
        f"({escape(report['reference_runner'])}) on {escape(report['inputs'])}; layout {report['layout']}")
    for side in ("file", "reference"):
        say(f"{side} ran on {escape(where_text(report['ran_on'][side]))}")
    rows = report["layers"]
    first = report["first_diverging"]
    k = first["index"] if first else 0
    shown = range(len(rows)) if all_rows else range(max(0, k - SHOWN // 2), min(len(rows), k + SHOWN // 2))
    table = Table(show_edge=False, pad_edge=False)
    for col in ("#", "layer", "op", "SQNR dB", "median ch. dB", "drop dB", "cosine", "max abs"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for i in shown:
        r = rows[i]
        name = r["layer"] + (f" (= {', '.join(r['also'])})" if r["also"] else "")
        mark = "[red]" if first and i == k else ""
        table.add_row(str(i), mark + escape(name), r["op"], _db(r["sqnr_db"]), _db(r["channel_sqnr_db"]),
                      f"{r.get('drop_db', 0):.1f}",
                      "-" if r["cosine"] is None else f"{r['cosine']:.5f}", f"{r['max_abs']:.3g}")
    console().print(table)
    say(f"{len(rows)} layers compared; {len(report['no_counterpart'])} modules have no tensor in the file (listed "
        f"in {escape(report['json'])}); threshold {report['threshold_db']:.0f} dB ({report['threshold_from']})")
    if report["taps_changed_outputs_rel"] and report["taps_changed_outputs_rel"] > 1e-4:
        say(f"[yellow]note[/]: the tapped run's outputs differ from the file's plain run by "
            f"{report['taps_changed_outputs_rel']:.2g} (relative): see {escape(report['file_runner'])}")
    if first:
        say(f"first diverging layer: [bold]{escape(first['layer'])}[/] (SQNR {_db(first['sqnr_db'])} dB, median "
            f"channel {_db(first['channel_sqnr_db'])} dB, "
            f"{first['drop_db']:.1f} dB below the layer before it)")
    else:
        say(f"no layer is below {report['threshold_db']:.0f} dB: the file agrees with its reference layer by layer")
    say(f"plot: {escape(report['plot'])}  ({report['seconds']:.1f}s)")
