"""Turn what ``edgekit bench`` is given into files to measure, then measure them with the harness.

A model is an edgekit checkpoint (run as eager torch, and exported here to ONNX / TFLite /
CoreML for the other backends), an exported file (its own backend), or a timm model name. A timm
name has no trained weights, and random weights are a trap: timm zero-initializes the last
BatchNorm gamma of residual blocks, so those branches output zeros and converters prune them
(resnet18 became a fake 3.9 ms TFLite model with 4 convs). Such models get those gammas set to 1
and BatchNorm statistics from real images before anything is measured, and the report says so.
The accuracy images are the val split of ``--data``, decoded once per input size into an ``.npy``.
:mod:`edgekit.benchmarks` then measures the files, through the runtime only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit import formats
from edgekit.benchmarks.harness import Bench, check_device, failure_reason, run_all
from edgekit.card import ModelCard
from edgekit.console import say
from edgekit.errors import ConfigError, EdgekitError, RemoteDeviceError, option
from edgekit.recipes.val_data import AUTO, own_data, prepare_dataset


def prepare(model: str, backends: list[str], work: Path, imgsz: int | None, data: str, role: str = "model",
            assume: dict[str, Any] | None = None) -> Bench:
    """Turn a model argument into files per requested backend (exporting a checkpoint as needed). ``assume``
    (:class:`edgekit.runtime.foreign.Assume` fields) describes files that carry no card."""
    path = Path(model)
    if path.exists():
        fmt = formats.SUFFIXES.get(path.suffix.lower())  # the format table, as it is now (a target added at run time)
        if fmt is None:
            raise ConfigError(f"{model}: not a model file edgekit can benchmark ({', '.join(formats.SUFFIXES)})")
        backend = fmt.bench
        if backend != "torch":
            from edgekit.runtime.metadata import NoCardError, read_card

            try:
                card = read_card(path)
            except NoCardError:
                return _foreign(path, backend, imgsz, assume, role)
            bench = Bench(name=_name(card, path), card=card, files={backend: path}, params=card.params, role=role,
                          precisions={backend: card.provenance.get("precision", "fp32")})
            if backend == "ort" and "web" in backends:  # the browser runs it from a bundle made here
                from edgekit.export.web import bundle_for

                bench.files["web"] = bundle_for(path, work / f"{path.stem}.web")
                bench.precisions["web"] = bench.precisions["ort"]
            return bench
        return _from_checkpoint(path, backends, work, imgsz, role)
    from edgekit.train.models import create_backbone

    try:
        create_backbone(model)
    except EdgekitError:
        raise ConfigError(f"{model}: neither a model file nor a timm model name") from None
    ckpt, notes = random_checkpoint(model, work / model, imgsz or 224, data)
    bench = _from_checkpoint(ckpt, backends, work, imgsz, role)
    bench.notes += notes
    return bench


def _foreign(path: Path, backend: str, imgsz: int | None, assume: dict[str, Any] | None, role: str) -> Bench:
    """A file edgekit did not write: measured with a card built from its graph and the stated assumptions or,
    when it is no single-image model, on inputs synthesized from its signature (latency, memory, residency)."""
    from edgekit.runtime.backends import open_backend
    from edgekit.runtime.foreign import Assume, NotAnImageModel, assumed_note, card_for, input_shapes, signature

    stated = Assume.of({**(assume or {}), **({"imgsz": imgsz} if imgsz else {})})
    opened = open_backend(path, device="cpu")
    bench = Bench(name=path.stem, card=None, files={backend: path}, role=role, assume=stated.to_dict(),
                  precisions={backend: "unknown"})
    try:
        bench.card, assumed = card_for(path, opened, stated)
        bench.notes.append(assumed_note(path, assumed))
    except NotAnImageModel:
        inputs = signature(opened, path.name)
        input_shapes(inputs, 1, stated.shapes)  # a missing --shape fails here, once
        bench.raw = True
        bench.notes.append(f"{path.name} carries no edgekit card and is no single-image model (inputs: "
                           f"{', '.join(t.name + ' ' + t.describe() for t in inputs)}): latency, memory and residency "
                           "on inputs synthesized from its signature, no accuracy")
    return bench


def _name(card: ModelCard, path: Path) -> str:
    return f"{card.name}{'-fused' if card.provenance.get('fused') else ''}"


def _from_checkpoint(path: Path, backends: list[str], work: Path, imgsz: int | None, role: str) -> Bench:
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.gates import gate_failures_text
    from edgekit.train.models import count_params, gflops
    from edgekit.train.trained import load_trained

    trained = load_trained(path)
    if imgsz:
        trained.card.input.size = [imgsz, imgsz]
    card = trained.card
    files: dict[str, Path] = {}
    precisions: dict[str, str] = {}
    if "torch" in backends:
        files["torch"] = path
    export_target = {fmt.bench: name for name, fmt in formats.FORMATS.items()}  # bench backend -> export target
    targets = [export_target[b] for b in backends if b in export_target]
    errors: dict[str, str] = {}
    notes: list[str] = []
    if targets:
        out = work / _name(card, path)
        try:  # verified like any export, so its files can be recommended; without val data they cannot be
            trained.images("val", limit=1)
            verify = True
        except EdgekitError as exc:
            verify = False
            notes.append(f"{path.name}: exported without verification ({exc}), so its files are never recommended")
        # kept although failed: a file that misses its gate is still timed, parity.json and the cards say it failed
        report = export_checkpoint(trained, targets, out, dynamic_batch=True, verify=verify, verbose=False,
                                   strict=False, keep_failed=True)
        for art in report.artifacts:
            backend = formats.FORMATS[art.format].bench
            files[backend], precisions[backend] = art.path, art.precision
        errors = {formats.FORMATS[f["format"]].bench: f"export failed: {f['error']}" for f in report.failures}
        notes += [f"{path.name} -> {e['file']}: missed its {e.get('precision_ran') or e['precision']} gate "
                  f"({gate_failures_text(e)}): timed, never recommended" for e in report.failed if e.get("kept")]
    return Bench(name=_name(card, path), card=card, files=files, precisions=precisions,
                 params=count_params(trained.model), notes=notes,
                 gflops=gflops(trained.model, trained.sample(1)), role=role, errors=errors, source=path)


def random_checkpoint(arch: str, out: Path, imgsz: int, data: str) -> tuple[Path, list[str]]:
    """A timm model with no trained weights, made safe to benchmark (see the module docstring)."""
    import torch

    from edgekit.card import HeadSpec, ModelCard
    from edgekit.config import DataConfig, ModelConfig, RunConfig
    from edgekit.train.checkpoint import save_checkpoint
    from edgekit.train.data import build_transforms, load_data
    from edgekit.train.models import backbone_data_config, build_student

    torch.manual_seed(0)
    model = build_student(arch, [HeadSpec("class", "classification", [str(i) for i in range(1000)])])
    fixed = 0
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            if bn.weight is not None and bool((bn.weight == 0).all()):
                bn.weight.fill_(1.0)
                fixed += 1
    cfg = DataConfig(source="digits" if data == "digits" else data, imgsz=imgsz, limit=256)
    bundle = load_data(cfg, [])
    tfs = build_transforms(cfg, bundle.kind, backbone_data_config(model.backbone))
    images = torch.stack([tfs.eval(bundle.train.load(i)) for i in range(len(bundle.train))])
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), 32):
            model(images[i: i + 32])
    floored = 0
    with torch.no_grad():
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
            if bn.running_var is not None and bn.running_var.numel() > 1:
                # A channel that is (nearly) constant on these images (black borders) gets a variance near 0
                # and a gain up to 1/sqrt(eps) ~ 316: random weights then amplify float rounding so much that
                # no fusion, FP16 or INT8 check can pass (mobileone_s0: fusion error 1.3e-3 on the embedding;
                # 1% floor: 5e-4, 50%: 5e-6). A trained network keeps its gains in a narrow range; so do we.
                floor = 0.5 * bn.running_var.median()
                floored += int((bn.running_var < floor).sum())
                bn.running_var.clamp_(min=float(floor))
    model.eval()
    card = ModelCard(name=f"{arch}-random", arch=arch, heads=model.head_specs, input=tfs.input,
                     provenance={"stage": "bench", "weights": "random (seed 0)"})
    notes = [f"{arch}: random weights; set {fixed} zero-initialized BatchNorm gamma(s) to 1 and computed "
             f"BatchNorm statistics from {len(images)} real images ({cfg.source}) so that no branch is pruned; "
             f"{floored} low-variance channel(s) got their variance floored at half their layer's median"]
    # the run config names the data, so exports calibrate and verify on the images the statistics came from
    source = str(Path(cfg.source).resolve()) if Path(cfg.source).exists() else cfg.source
    run = RunConfig(data=DataConfig(source=source, imgsz=imgsz), model=ModelConfig(arch=arch))
    path = save_checkpoint(out / "model.pt", {"card": card.to_dict(), "config": run.model_dump(mode="json"),
                                              "model_state": model.state_dict(), "epoch": None})
    return path, notes


def bench(models: list[str], backends: list[str], batches: list[int], device: str = "auto", imgsz: int | None = None,
          data: str | None = AUTO, out: Path = Path("runs/bench/latest"), teacher: str | None = None,
          threads: int | None = None, min_seconds: float = 1.0, verbose: bool = True,
          assume: dict[str, Any] | None = None, remote=None) -> tuple[list[dict], dict]:
    """Prepare every model, measure every (model, backend, batch), write the reports. ``assume``: what the user
    states about files without a card (``--shape``, ``--mean``, ``--labels``...; see :mod:`edgekit.runtime.foreign`).
    ``remote``: a connected device (:class:`edgekit.devices.remote.Remote`) that runs every measurement."""
    import platform

    from rich.markup import escape

    from edgekit.benchmarks.report import print_table, write_reports
    from edgekit.runtime.backends import check_threads

    on = None
    if remote is not None:  # what the device can run, and its usable cores (recipes/on_device.py)
        from edgekit.recipes.on_device import OnDevice

        on = OnDevice(remote, backends)
        backends, threads = on.backends, threads or on.threads
    else:
        check_device(device, backends)
    threads = check_threads(threads)  # explicit for every backend: the machine's usable cores by default
    if not models and not teacher:
        raise ConfigError("give at least one model (a checkpoint, an exported file or a timm name)")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    benches = []
    for role, model in [("teacher", teacher)] * bool(teacher) + [("model", m) for m in models]:
        if verbose:
            say(f"preparing {model}")
        try:
            benches.append(prepare(model, backends, work, imgsz, "digits" if data in (None, AUTO) else data, role,
                                   assume))
        except Exception as exc:  # noqa: BLE001 - one bad model must not stop the others: its rows say why
            reason = failure_reason(exc)
            if verbose:
                say(f"  [red]{model}: n/a[/] ({reason})")
            if isinstance(exc, EdgekitError) and len(models) + bool(teacher) == 1:
                raise  # nothing else to measure: the one-line error is the whole answer
            benches.append(Bench(name=Path(model).name, card=None, files={}, role=role, errors={"*": reason}))
    notes = [n for b in benches for n in b.notes] + (on.notes if on else [])
    for n in notes:
        if verbose:
            say(f"[yellow]note[/]: {n}")
    if "coreml" in backends and (on.system if on else platform.system()) != "Darwin":
        notes.append("coreml: not measured (CoreML models run only on macOS)")
        backends = [b for b in backends if b != "coreml"]
    if any(b.files.get("executorch") for b in benches) and "executorch" not in backends:
        backends = [*backends, "executorch"]  # a .pte given by name is measured (no checkpoint is exported to it)

    def dataset_of(b: Bench) -> tuple[Path, Path] | None:
        if b.card is not None and b.card.input.audio:
            raise ConfigError("a sound model is timed on noise windows; its mAP / LWLRAP through each runtime is "
                              "in its export's parity.json")
        if b.raw:
            raise ConfigError("no single image input, so no images to classify")
        if b.assume is not None and not b.card.provenance.get("labels"):
            raise ConfigError(f"no card and no class names (give {option('labels')})")
        source = own_data(b.card) if data == AUTO else data
        if source is None:
            raise ConfigError(f"its card names no dataset found here ({b.card.provenance.get('data') or 'none'}); "
                              f"give one with {option('data')}")
        found = prepare_dataset(b.card, source, work)
        if found is None:
            raise ConfigError(f"its heads do not match the labels of '{source}'")
        return found

    meta = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, {platform.system()}",
            "device": device, "threads": threads, "batches": batches,
            "data": "each model's own validation data (its card)" if data == AUTO else (data or "none")}
    if on:
        meta.update(on.meta())
    try:
        rows = run_all(benches, backends, batches, device, threads, data, work, min_seconds, verbose,
                       dataset_of=dataset_of, runner=on.runner if on else None)
    except RemoteDeviceError as exc:  # the device went away: what it measured before is kept, then the error
        kept = write_reports(on.mark(exc.rows or []), out, [*notes, f"stopped: {exc}"], meta)["json"]
        raise RemoteDeviceError(f"{exc}; the {len(exc.rows or [])} measurement(s) made before are kept in {kept}") \
            from None
    notes += [n for b in benches for n in b.notes if n not in notes]  # what measuring added (accuracy n/a...)
    if on:
        rows = on.mark(rows)
    paths = write_reports(rows, out, notes, meta)
    from edgekit.benchmarks.recommend import lines, recommend, write_recommendation
    from edgekit.recipes.deployment import write_cards

    # the fastest file that passed its gates, per model and batch, on this machine (on the device: proven there)
    rec = recommend(rows, **(on.recommend_args() if on else {}))
    paths.update(write_recommendation(rec, out))
    if on is None:
        write_run_latency(benches, rows, meta)
    cards = write_cards(rows, out, rec, **(on.card_args() if on else {}))  # FILE.report.json + deployment.md
    if cards:
        paths["deployment"] = cards[-1]
    if verbose:
        print_table(rows)
        for line in lines(rec):
            say(escape(line))
    return rows, paths


def write_run_latency(benches: list[Bench], rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[Path]:
    """``latency.json`` in the run folder of each checkpoint measured (a ``best.pt`` beside a ``config.yaml``):
    what ``edgekit report`` shows as the run's latency, with the machine and threads it was measured on."""
    import datetime as dt

    from edgekit.atomic import write_json

    written = []
    for b in benches:
        run = b.source.parent if b.source is not None else None
        if run is None or not (run / "config.yaml").is_file():
            continue
        mine = [{k: r.get(k) for k in ("backend", "precision", "batch", "p50_ms", "p90_ms", "frontend_p50_ms",
                                       "threads", "file")}
                for r in rows if r["model"] == b.name and "p50_ms" in r]
        if mine:
            written.append(write_json(run / "latency.json", {
                "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": meta["machine"],
                "threads": meta["threads"], "rows": mine}))
    return written
