"""The ``edgekit`` command line: one verb per stage of the deployment path.

Only typer and edgekit's error types are imported here; each command imports what it needs when
it runs, so ``edgekit --help`` never imports torch. Any :class:`~edgekit.errors.EdgekitError`
becomes a one-line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgekit import __version__
from edgekit.cli_demo import demo_app
from edgekit.cli_device import device_app
from edgekit.cli_diff import EPILOG as DIFF_EPILOG
from edgekit.cli_diff import diff_command
from edgekit.errors import EdgekitError, cli_messages
from edgekit.logs import quiet_native_logs

app = typer.Typer(
    name="edgekit",
    help="Distill, compress, export, verify, benchmark and run vision and sound models on edge devices.\n\n"
         "Every command defaults to the embedded digits dataset, so each one does real work with no "
         "arguments on a fresh machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- options shared by train and distill -----------------------------------------------------------
Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (e.g. a run's config.yaml).")]
Data = Annotated[str | None, typer.Option(
    help="'digits' (embedded), an ImageFolder root (train/ val/) or a CSV; clips: 'moving_digits' (embedded) or a "
         "CSV of video,start_frame,stop_frame,label (or verb_class,noun_class); sound: 'speech_commands' "
         "(embedded), a folder per class of sound files or a CSV (fname,labels / path,label).")]
Val = Annotated[str | None, typer.Option(help="Validation CSV (for a CSV --data; default: a stratified split).")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="timm model name of the student.")]
Heads = Annotated[str | None, typer.Option(
    help="Heads as name[:kind[:loss]],... kind: classification|multilabel|regression, "
         "e.g. 'age:regression,gender,emotion'.")]
Imgsz = Annotated[int | None, typer.Option(help="Input size in pixels (square).")]
Epochs = Annotated[int | None, typer.Option(help="Training epochs.")]
Batch = Annotated[int | None, typer.Option("--batch-size", "-b", help="Batch size per process.")]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
Seed = Annotated[int | None, typer.Option(help="Seed of data order, augmentation and init.")]
Name = Annotated[str | None, typer.Option(help="Run name: the run folder is OUT/<stage>/<name>.")]
Out = Annotated[str | None, typer.Option(help="Folder holding the run folders (default: runs).")]
Workers = Annotated[int | None, typer.Option(help="DataLoader worker processes.")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (a warning) instead of failing.")]
NoAug = Annotated[bool, typer.Option("--no-augment", help="Train without augmentation.")]
Resume = Annotated[Path | None, typer.Option(help="Continue the run in this folder from its last.pt.")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override any config key: --set train.weight_decay=0.01")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Frames = Annotated[int | None, typer.Option(help="Clips: frames per clip (default 8).")]
Temporal = Annotated[str | None, typer.Option(help="Clips: how frames are pooled: mean, attention or transformer.")]
Cross = Annotated[bool, typer.Option("--cross-attention",
                                     help="Clips with two heads (verb, noun): cross-task attention.")]
Domain = Annotated[str | None, typer.Option(
    help="What the images show, written in the card, e.g. 'faces' (default: inferred: FER2013/UTKFace data or "
         "age/gender/emotion heads mean faces). The kiosk warns about models not trained on faces.")]
Ckpt = Annotated[Path, typer.Argument(help="edgekit checkpoint (.pt).")]
Target = Annotated[str, typer.Option(
    help="onnx, tflite, coreml, executorch, openvino, web (a browser bundle around the ONNX file), all (every "
         "installed file target), or a comma list.")]
Calib = Annotated[int, typer.Option(help="Calibration images (from the training data) for INT8.")]
CalibMethod = Annotated[str, typer.Option(help="minmax, percentile or entropy (ONNX).")]
FloatSearch = Annotated[str, typer.Option(
    help="The float-layer search (--max-drop): 'block' puts in float the most sensitive top-level blocks; 'layer' "
         "first tries the layers edgekit diff ranks worst in the INT8 file that missed its gate (at most --max-float "
         "of them), then the blocks.")]
MaxFloat = Annotated[float, typer.Option(
    help="Per-layer search: at most this share of the model's conv/linear layers in float (else exit 2, naming "
         "the layers that keep the file from passing).")]
MaxDrop = Annotated[float | None, typer.Option(
    help="Gate: the most accuracy (classification top-1; multilabel mAP and LWLRAP) a FP16/INT8 file may lose "
         "against PyTorch, in points, on val images through its runtime (default: the gate table, 1 for INT8). "
         "With --int8 it also keeps the most sensitive blocks in float until each INT8 file passes; exit 2 if it "
         "cannot.")]
MinSqnr = Annotated[float | None, typer.Option(
    help="Gate: output SQNR floor in dB of every head of a FP16/INT8 file (default: the gate table, 10 for INT8, "
         "30 for FP16).")]
MaxMae = Annotated[float | None, typer.Option(
    help="Gate: the relative MAE increase a regression head of a FP16/INT8 file may show against PyTorch "
         "(0.1 = 10%; default: the gate table).")]
KeepFailed = Annotated[bool, typer.Option(
    "--keep-failed", help="Keep a file that misses its gate in place (its card then says it failed) instead of "
                          "moving it aside as *.failed; the exit code is still 2.")]
DataMoved = Annotated[str | None, typer.Option(
    "--data", help="The dataset the checkpoint was trained on, when it has moved since (default: the one its "
                   "config names). Calibration and verification use it.")]


def _overrides(**kw) -> dict:
    keys = {"data": "data.source", "val": "data.val", "model": "model.arch", "imgsz": "data.imgsz",
            "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "device": "train.device",
            "seed": "train.seed", "name": "name", "out": "out", "workers": "data.workers",
            "teacher": "distill.teacher", "teacher_weights": "distill.teacher_weights",
            "teacher_logits": "distill.teacher_logits", "teacher_epochs": "distill.teacher_epochs",
            "alpha": "distill.alpha", "beta": "distill.beta", "gamma": "distill.gamma",
            "temperature": "distill.temperature", "feature_loss": "distill.feature_loss", "views": "distill.views",
            "frames": "data.frames", "temporal": "model.temporal", "domain": "data.domain"}
    out = {keys[k]: v for k, v in kw.items() if k in keys and v is not None}
    if kw.get("skip_bad"):
        out["data.skip_bad"] = True
    if kw.get("no_augment"):
        out["data.augment.enabled"] = False
    if kw.get("cross_attention"):
        out["model.cross_attention"] = True
    if kw.get("heads"):
        from edgekit.config import parse_heads

        out["model.heads"] = parse_heads(kw["heads"])
    return out


@app.command(epilog="Examples:\n\n"
             "  edgekit train       # mobileone_s0 on the embedded digits\n\n"
             "  edgekit train --model resnet18 --epochs 5 --name teacher\n\n"
             "  edgekit train --data ~/faces.csv --heads 'age:regression,gender,emotion' --imgsz 96\n\n"
             "  edgekit train --resume runs/train/digits-mobileone_s0\n\n"
             "  edgekit train --data moving_digits --model mobilevit_xxs --temporal attention   # 8-frame clips\n\n"
             "  edgekit train --data epic.csv --frames 8 --temporal transformer --cross-attention  # verb + noun\n\n"
             "  edgekit train --data train_curated.csv --model resnet18   # sound (or speech_commands, embedded)\n\n"
             "  torchrun --nproc_per_node 2 -m edgekit train --device cpu   # DDP")
def train(config: Config = None, data: Data = None, val: Val = None, model: Model = None, heads: Heads = None,
          imgsz: Imgsz = None, epochs: Epochs = None, batch_size: Batch = None, lr: Lr = None,
          device: Device = None, seed: Seed = None, name: Name = None, out: Out = None, workers: Workers = None,
          skip_bad: SkipBad = False, no_augment: NoAug = False, resume: Resume = None, set_: Sets = None,
          quiet: Quiet = False, frames: Frames = None, temporal: Temporal = None, cross_attention: Cross = False,
          domain: Domain = None) -> None:
    """Train a model on labels. Writes runs/train/NAME/ (best.pt, last.pt, history.json, card.json)."""
    from edgekit.config import load_config
    from edgekit.train.supervised import resume_config
    from edgekit.train.supervised import train as run_train

    if resume is not None:
        cfg = resume_config(resume, stage="train")
    else:
        cfg = load_config(config, _overrides(**locals()), set_, stage="train")
    result = run_train(cfg, resume=resume is not None, verbose=not quiet)
    if result.best["value"] is not None:  # None on DDP ranks other than 0
        typer.echo(f"{result.run_dir / 'best.pt'}  best {result.best['metric']} = {result.best['value']:.4f}")


@app.command(epilog="Examples:\n\n"
             "  edgekit distill     # digits: train a resnet18 teacher, distill mobileone_s0, compare with no KD\n\n"
             "  edgekit distill --teacher timm:resnet50 --teacher-weights resnet50.safetensors --data ~/imgs\n\n"
             "  edgekit distill --teacher open_clip:ViT-B-32 --teacher-weights open_clip_model.safetensors "
             "--model mobilevit_xxs --alpha 0.5 --beta 1 --gamma 1 --temperature 3\n\n"
             "  edgekit distill --seeds 3 --set data.fraction=0.1   # KD vs no KD over seeds 0-2: mean ± std, "
             "gain; students see a stratified 10% of the labels, the teacher edgekit trains sees all of them\n\n"
             "  edgekit distill --seeds 3 --set data.fraction=0.1 --unlabeled rest   # + KD on the other 90% of the "
             "images, unlabelled\n\n"
             "  edgekit distill --data ~/pets --unlabeled ~/pets-unsorted/   # a folder of images nobody labelled")
def distill(config: Config = None, data: Data = None, val: Val = None, model: Model = None, heads: Heads = None,
            imgsz: Imgsz = None, epochs: Epochs = None, batch_size: Batch = None, lr: Lr = None,
            device: Device = None, seed: Seed = None, name: Name = None, out: Out = None, workers: Workers = None,
            skip_bad: SkipBad = False, no_augment: NoAug = False, resume: Resume = None, set_: Sets = None,
            quiet: Quiet = False, frames: Frames = None, temporal: Temporal = None, cross_attention: Cross = False,
            domain: Domain = None,
            teacher: Annotated[str | None, typer.Option(
                help="timm:<name> or open_clip:<arch>[:<pretrained tag>] (default timm:resnet18).")] = None,
            teacher_weights: Annotated[str | None, typer.Option(
                help="Teacher weights: an edgekit checkpoint, a timm state dict or an open_clip checkpoint. "
                     "Left out with a timm teacher: edgekit trains the teacher on the same data first (all of "
                     "its train split, even when --set data.fraction=F gives the student a share).")] = None,
            teacher_logits: Annotated[str | None, typer.Option(help="auto, head, probe or zeroshot (CLIP).")] = None,
            teacher_epochs: Annotated[int | None, typer.Option(help="Epochs when edgekit trains the teacher.")] = None,
            alpha: Annotated[float | None, typer.Option(help="Weight of the feature loss.")] = None,
            beta: Annotated[float | None, typer.Option(help="Weight of the response (soft label) loss.")] = None,
            gamma: Annotated[float | None, typer.Option(help="Weight of the task (label) loss.")] = None,
            temperature: Annotated[float | None, typer.Option("--temperature", "-T", help="KD temperature.")] = None,
            feature_loss: Annotated[str | None, typer.Option(help="cosine or mse.")] = None,
            views: Annotated[int | None, typer.Option(help="Cached augmentation views per sample.")] = None,
            baseline: Annotated[bool, typer.Option(
                help="Also train the student without KD (same epochs and seed) and compare.")] = True,
            seeds: Annotated[int, typer.Option(
                min=1, help="Run KD and the no-KD baseline for seeds SEED..SEED+N-1 and report mean ± std of each, "
                            "the gain and whether it exceeds the spread (seeds.json in the run folder).")] = 1,
            unlabeled: Annotated[str | None, typer.Option(
                help="Images the student learns from through the teacher only (its label loss stays on the "
                     "labelled ones): 'rest' (the training images outside --set data.fraction=F) or a folder of "
                     "unlabelled images. The no-KD baseline never sees them. With --seeds: a third arm.")] = None
            ) -> None:
    """Distill a frozen teacher into a small student: L = a*L_feat + b*L_resp + g*L_task."""
    from edgekit.compress.distill import distill as run_distill
    from edgekit.compress.distill import print_report
    from edgekit.config import load_config
    from edgekit.train.supervised import resume_config

    if resume is not None:
        if seeds > 1:
            from edgekit.errors import ConfigError

            raise ConfigError("--seeds cannot be combined with --resume (rerun the same command instead)")
        cfg = resume_config(resume, stage="distill")
    else:
        sets = list(set_ or []) + ([] if baseline else ["distill.baseline=false"])
        cfg = load_config(config, _overrides(**locals()), sets, stage="distill")
    if seeds > 1:
        from edgekit.compress.kd_seeds import kd_over_seeds, print_seeds

        result = kd_over_seeds(cfg, seeds, None, verbose=not quiet, reuse=False, unlabeled=unlabeled)
        if result is not None:  # None on DDP ranks other than 0
            print_seeds(result)
            typer.echo(f"{result['run_dir']}/seeds.json")
        return
    if unlabeled is not None:
        cfg.distill.unlabeled = unlabeled if unlabeled == "rest" else str(Path(unlabeled).resolve())
    report = run_distill(cfg, resume=resume is not None, verbose=not quiet)
    if report is not None:  # None on DDP ranks other than 0
        print_report(report)
        typer.echo(str(report.run_dir / "best.pt"))


@app.command(epilog="Examples:\n\n"
             "  edgekit reparam runs/distill/digits-mobileone_s0/best.pt\n\n"
             "  edgekit reparam runs/train/my-repvgg/best.pt --out runs/reparam/repvgg\n\n"
             "  edgekit reparam best.pt --data /mnt/new/place/pets     # the training data has moved")
def reparam(ckpt: Annotated[Path, typer.Argument(help="edgekit checkpoint (.pt) of a MobileOne/RepVGG/FastViT model.")],
            out: Annotated[Path | None, typer.Option(help="Output folder (default runs/reparam/NAME).")] = None,
            images: Annotated[int, typer.Option(help="Val images for the equivalence check.")] = 256,
            data: DataMoved = None) -> None:
    """Fuse training-time branches into single convs; refuse to save if outputs change (rel. error > 1e-4)."""
    from edgekit.compress.reparam import fuse_checkpoint
    from edgekit.console import say
    from edgekit.train.checkpoint import card_of, load_checkpoint

    name = card_of(load_checkpoint(ckpt)).name
    report = fuse_checkpoint(ckpt, out or Path("runs") / "reparam" / name, n_images=images, data=data)
    s = report.stats
    say(f"params {s['params_before'] / 1e6:.2f} M -> {s['params_after'] / 1e6:.2f} M, "
        f"GFLOPs {s['gflops_before']:.3f} -> {s['gflops_after']:.3f}, "
        f"eager batch-1 latency {s['eager_ms_before']:.2f} -> {s['eager_ms_after']:.2f} ms, "
        f"max relative error {s['max_rel']:.1e} on {s['images']} val images")
    typer.echo(str(report.path))


@app.command(epilog="Examples:\n\n"
             "  edgekit export runs/reparam/digits-mobileone_s0/model.pt --target all\n\n"
             "  edgekit export best.pt --target onnx --dynamic-batch --fp16\n\n"
             "  edgekit export best.pt --target tflite --int8 --calib 512\n\n"
             "  edgekit export best.pt --target openvino --int8     # model.xml + model.int8.xml (NNCF)\n\n"
             "  edgekit export best.pt --target web --int8   # model.web/ + model.int8.web/, checked in Chromium\n\n"
             "  edgekit export best.pt --target onnx --int8 --max-drop 0.5 --min-sqnr 15   # stricter gates\n\n"
             "  edgekit export best.pt --data /mnt/new/place/pets     # the training data has moved\n\n"
             "Every file is run through its own runtime on the val images and judged by its precision's gate "
             "(FP32: relative error <= 1e-4; FP16/INT8: output SQNR floor, top-1 agreement and accuracy drop, "
             "mAP/LWLRAP drop, MAE increase); a file that misses it is moved aside as *.failed, parity.json says "
             "why, and the exit code is 2.")
def export(ckpt: Ckpt,
           target: Target = "all",
           int8: Annotated[bool, typer.Option("--int8", help="Also write INT8 files (PTQ, see edgekit quantize).")]
           = False,
           fp16: Annotated[bool, typer.Option("--fp16", help="Also write FP16 ONNX/TFLite (CoreML is FP16 anyway).")]
           = False,
           batch: Annotated[int, typer.Option(help="Fixed batch size of the exported graph.")] = 1,
           dynamic_batch: Annotated[bool, typer.Option(
               "--dynamic-batch", help="ONNX: a dynamic batch axis. TFLite files are resized by the runtime only to "
                                       "a batch proven to give the exported batch's answers (else run in chunks "
                                       "of --batch); CoreML files have a fixed batch of 1.")]
           = False,
           imgsz: Annotated[int | None, typer.Option(help="Export at another input size than trained.")] = None,
           out: Annotated[Path | None, typer.Option(help="Output folder (default runs/export/NAME).")] = None,
           calib: Calib = 256,
           calib_method: CalibMethod = "minmax",
           skip_layers: Annotated[str, typer.Option(help="Modules kept in float with --int8, comma separated.")]
           = "",
           verify: Annotated[bool, typer.Option(help="Check each file against PyTorch on val images.")] = True,
           max_drop: MaxDrop = None,
           float_search: FloatSearch = "block",
           max_float: MaxFloat = 0.1,
           min_sqnr: MinSqnr = None,
           max_mae_increase: MaxMae = None,
           keep_failed: KeepFailed = False,
           data: DataMoved = None,
           quiet: Quiet = False) -> None:
    """Export to ONNX / CoreML / TFLite / ExecuTorch / OpenVINO with the model card inside, and prove parity
    (parity.json).

    Each target and precision succeeds or fails alone: every file that can be made is made and
    verified; failures are listed in parity.json, and the exit code is 2 when any requested file failed."""
    from edgekit.errors import ConfigError
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.gates import check_overrides
    from edgekit.export.int8 import Int8
    from edgekit.export.report import ExportError
    from edgekit.train.trained import load_trained

    targets = parse_targets(target)
    overrides = check_overrides(max_drop, min_sqnr, max_mae_increase)
    if max_drop is not None and int8 and _split(skip_layers):
        raise ConfigError("--max-drop chooses the float layers itself: leave --skip-layers out")
    # --max-drop with --int8: the float-layer search (as edgekit quantize), in this same export
    policy = Int8(float_layers="auto" if max_drop is not None else tuple(_split(skip_layers)), calib_images=calib,
                  calib_method=calib_method, search_by=float_search, max_float=max_float) if int8 else False
    trained = load_trained(ckpt, data=data)
    try:
        report = export_checkpoint(trained, targets, out, int8=policy, fp16=fp16, batch=batch,
                                   dynamic_batch=dynamic_batch, imgsz=imgsz, verify=verify,
                                   verbose=not quiet, gate_overrides=overrides, keep_failed=keep_failed)
    except ExportError as exc:
        bad = {e["file"] for e in exc.report.failed if not e.get("kept")}
        for art in exc.report.artifacts:
            if art.path.name not in bad:
                typer.echo(str(art.path))
        raise
    made = [a.path for a in report.artifacts]
    from edgekit.atomic import write_json
    from edgekit.recipes.deployment import card_for_file

    for path in made:
        if path.exists():
            write_json(path.with_name(path.name + ".report.json"), card_for_file(path))  # latency: edgekit bench
            typer.echo(str(path))


@app.command(epilog="Examples:\n\n"
             "  edgekit quantize runs/distill/digits-mobileone_s0/best.pt               # PTQ, float layers chosen\n\n"
             "  edgekit quantize best.pt --method qat --epochs 3 --lr 1e-4\n\n"
             "  edgekit quantize best.pt --calib 512 --calib-method percentile --skip-layers backbone.stem\n\n"
             "  edgekit quantize best.pt --max-drop 0.5     # INT8 within 0.5 accuracy points per backend, or exit 2")
def quantize(ckpt: Ckpt,
             method: Annotated[str, typer.Option(help="ptq (post-training) or qat (quantization-aware training).")]
             = "ptq",
             target: Target = "onnx,tflite",
             calib: Calib = 256,
             calib_method: CalibMethod = "minmax",
             skip_layers: Annotated[str, typer.Option(
                 help="Modules kept in float (comma separated), 'auto' to pick them (the --max-drop gate, default "
                      "1 point), '' for none.")] = "auto",
             epochs: Annotated[int, typer.Option(help="QAT fine-tuning epochs.")] = 3,
             lr: Annotated[float, typer.Option(help="QAT learning rate.")] = 1e-4,
             out: Annotated[Path | None, typer.Option(help="Output folder (default runs/quantize/NAME/METHOD).")]
             = None,
             max_drop: MaxDrop = None,
             float_search: FloatSearch = "block",
             max_float: MaxFloat = 0.1,
             min_sqnr: MinSqnr = None,
             max_mae_increase: MaxMae = None,
             data: DataMoved = None,
             quiet: Quiet = False) -> None:
    """INT8 ONNX / TFLite / ExecuTorch (/ INT8-weight CoreML), evaluated through the real INT8 runtimes ->
    quant.json."""
    from edgekit.export.quantize import quantize_checkpoint

    skip = "auto" if skip_layers == "auto" else _split(skip_layers)
    summary = quantize_checkpoint(ckpt, method, parse_targets(target), out, calib, calib_method, skip, epochs, lr,
                                  verbose=not quiet, max_drop=max_drop, min_sqnr=min_sqnr,
                                  max_mae_increase=max_mae_increase, data=data, search_by=float_search,
                                  max_float=max_float)
    for f in summary["files"]:
        typer.echo(f)


# what predict and bench are told about a model file without an edgekit card (else assumed, and said so)
Mean = Annotated[str | None, typer.Option(help="Card-less file: per-channel mean of [0, 1] pixels, e.g. 0.5,0.5,0.5 "
                                               "(default ImageNet's; raw codes for an integer input).")]
Std = Annotated[str | None, typer.Option(help="Card-less file: per-channel std, e.g. 0.5,0.5,0.5.")]
Bgr = Annotated[bool, typer.Option("--bgr", help="Card-less file: it takes BGR images (default RGB).")]
Labels = Annotated[Path | None, typer.Option(help="Card-less file: class names, one per line (the first output "
                                                  "with more than one value).")]
Layout = Annotated[str | None, typer.Option(help="Card-less file: nchw or nhwc (default: from the input shape).")]
On = Annotated[str | None, typer.Option("--on", help="Run it on a device over SSH: a name (edgekit device add) or "
                                                     "ssh://user@host[:port], set up with edgekit device setup.")]


@app.command(epilog="Examples:\n\n"
             "  edgekit predict runs/export/digits-mobileone_s0-fused/model.int8.tflite digit.png\n\n"
             "  edgekit predict model.onnx photos/ --json --topk 3\n\n"
             "  edgekit predict model.onnx clip.mp4 --stride 10\n\n"
             "  edgekit predict sound_model.onnx sounds/ --json          # tags, and their times in long files\n\n"
             "  edgekit predict not_edgekit.onnx cat.jpg --labels labels.txt --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5\n\n"
             "  edgekit predict model.int8.tflite photos/ --on pi      # on the device, over SSH")
def predict(model: Annotated[Path, typer.Argument(help=".onnx, .tflite, .xml (OpenVINO), .mlpackage or edgekit .pt")],
            source: Annotated[Path, typer.Argument(
                help="An image, a folder of images, a video file; for a sound model a sound file or a folder.")],
            json_: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
            topk: Annotated[int, typer.Option(help="Classes to list per classification head.")] = 1,
            device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps; gpu or npu for OpenVINO.")] = "auto",
            threads: Annotated[int | None, typer.Option(
                help="CPU threads of the backend (default: this machine's usable cores).")] = None,
            stride: Annotated[int, typer.Option(help="Video: every N-th frame.")] = 1,
            imgsz: Annotated[int | None, typer.Option(help="Card-less file with dynamic H, W: input size "
                                                           "(default 224).")] = None,
            mean: Mean = None, std: Std = None, bgr: Bgr = False, labels: Labels = None, layout: Layout = None,
            on: On = None) -> None:
    """Run a model on images, a video or sound files and print the predictions (the runtime: no torch needed)."""
    from edgekit.config import parse_assume
    from edgekit.runtime.predict_files import print_predictions, run_on_source

    if on is not None:
        from edgekit.recipes.on_device import predict_on

        if any(v is not None for v in (imgsz, mean, std, labels, layout)) or bgr:
            raise EdgekitError("--on runs files edgekit exported (their card says how to feed them): the card-less "
                               "options --imgsz, --mean, --std, --bgr, --labels, --layout are for this machine only")
        print_predictions(predict_on(model, source, on, topk, threads, stride, device), as_json=json_, model=model)
        return

    from edgekit import formats

    formats.import_backend(model)  # a checkpoint runs in eager PyTorch: train's backend opens it
    assume = parse_assume(imgsz, mean, std, bgr, labels, layout)
    results = run_on_source(model, source, topk=topk, device=device, threads=threads, stride=stride, assume=assume)
    print_predictions(results, as_json=json_, model=model)


@app.command(epilog="Examples:\n\n"
             "  edgekit bench runs/reparam/digits-mobileone_s0/model.pt --teacher runs/teacher/.../best.pt\n\n"
             "  edgekit bench model.int8.onnx model.int8.tflite --batch 1,8,32\n\n"
             "  edgekit bench resnet18 mobilenetv3_large_100 --imgsz 224 --backend torch,ort --data none\n\n"
             "  edgekit bench best.pt --device cuda\n\n"
             "  edgekit bench not_edgekit.onnx --shape images:1,3,640,640 --data none   # no card: synthesized "
             "inputs\n\n"
             "  edgekit bench model.onnx model.int8.tflite --on pi --out runs/bench/pi   # measured on the device")
def bench(models: Annotated[list[str] | None, typer.Argument(
              help="Checkpoints (.pt), exported files (.onnx, .tflite, .mlpackage, .pte, .xml) or timm model names.")]
          = None,
          backend: Annotated[str, typer.Option(
              help="torch, ort, tflite, coreml, executorch, openvino, web (headless Chromium, next to native "
                   "onnxruntime at the same threads), all (all but executorch and web; openvino when installed), or a "
                   "comma list.")] = "all",
          device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps; gpu or npu with --backend openvino.")]
          = "auto",
          batch: Annotated[str, typer.Option(help="Batch sizes, comma separated.")] = "1,8,32",
          imgsz: Annotated[int | None, typer.Option(help="Input size (default: each model's own).")] = None,
          data: Annotated[str, typer.Option(
              help="Accuracy dataset: 'auto' (each model's own validation data, as its card names it), 'digits', "
                   "a folder, a CSV, or 'none'.")] = "auto",
          teacher: Annotated[str | None, typer.Option(help="Reference model: ratios are against it.")] = None,
          threads: Annotated[int | None, typer.Option(
              help="CPU threads, the same for every backend (default: this machine's usable cores).")] = None,
          seconds: Annotated[float, typer.Option(help="Minimum timed seconds per measurement.")] = 1.0,
          out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/bench/latest"),
          quiet: Quiet = False,
          shape: Annotated[list[str] | None, typer.Option(
              help="Card-less file with dynamic axes: an input's shape, 1,3,224,224 (the first input) or "
                   "NAME:1,3,224,224; repeat per input. A dynamic axis 0 is the --batch.")] = None,
          mean: Mean = None, std: Std = None, bgr: Bgr = False, labels: Labels = None, layout: Layout = None,
          on: On = None) -> None:
    """Latency (p50/p90/p99), throughput, load time, memory, what ran where, size, params/FLOPs and accuracy."""
    import contextlib

    from edgekit.config import parse_assume
    from edgekit.recipes.bench import bench as run_bench

    assume = parse_assume(None, mean, std, bgr, labels, layout, shape)  # --imgsz goes to every model
    with contextlib.ExitStack() as stack:
        remote = None
        if on is not None:
            from edgekit.recipes.on_device import connect

            remote = stack.enter_context(connect(on))
        _, paths = run_bench(models or [], parse_backends(backend), parse_batches(batch), device, imgsz,
                             None if data == "none" else data, out, teacher, threads, seconds, verbose=not quiet,
                             assume=assume, remote=remote)
    for p in paths.values():
        typer.echo(str(p))


@app.command(epilog="Examples:\n\n"
             "  edgekit check model.int8.tflite --max-latency-ms 5 --min-accuracy 95 --max-size-mb 2\n\n"
             "  edgekit check model.onnx --max-size-mb 10     # size only: no model is run\n\n"
             "  edgekit check model.int8.tflite --parity      # after a runtime/OS upgrade: the card's golden inputs "
             "against PyTorch's stored outputs, no training data\n\n"
             "  edgekit check model.int8.onnx --parity --on pi   # on the device too: golden inputs + the validation "
             "samples export used, side by side with this machine; recorded in parity.json\n\n"
             "Exit code: 0 every gate passed, 1 a gate failed, 2 bad input.")
def check(model: Annotated[Path, typer.Argument(
              help="Model file: .onnx, .tflite, .pte, .xml (.mlpackage: size only).")],
          max_latency_ms: Annotated[float | None, typer.Option(help="Gate: batch-1 p50 latency on this machine.")]
          = None,
          min_accuracy: Annotated[float | None, typer.Option(
              help="Gate: top-1 accuracy in percent on --data's val split, through the runtime.")] = None,
          max_size_mb: Annotated[float | None, typer.Option(help="Gate: file size in MB.")] = None,
          data: Annotated[str, typer.Option(
              help="Accuracy dataset: 'auto' (the model's own validation data, as its card names it), 'digits', "
                   "a folder or a CSV.")] = "auto",
          threads: Annotated[int | None, typer.Option(
              help="CPU threads of the backend (default: this machine's usable cores).")] = None,
          parity: Annotated[bool, typer.Option(
              "--parity", help="Gate: the golden inputs inside the file's card, run here, must match PyTorch's "
                               "stored outputs within the file's precision gate.")] = False,
          json_: Annotated[bool, typer.Option("--json", help="The gates as JSON on stdout.")] = False,
          samples: Annotated[Path | None, typer.Option(
              help="Gate: validation samples with PyTorch's outputs (.npz, as check --on builds and sends them), "
                   "judged like --parity.")] = None,
          on: On = None,
          val_images: Annotated[str | None, typer.Option(
              help="With --on --parity: the validation samples sent, a count or 'all' (default: as many as export "
                   "verified the file on; 0: the golden inputs only).")] = None) -> None:
    """Deployment gates for CI: fail (exit 1) when latency, accuracy, size or parity misses its limit."""
    import json

    from edgekit.recipes.check import check as run_check

    if on is not None:
        from edgekit.recipes.on_device import check_on, print_check

        if min_accuracy is not None or samples is not None:
            raise EdgekitError("--on: accuracy on the device is measured by edgekit bench FILE --on DEVICE; --parity "
                               "sends the validation samples itself")
        result = check_on(model, on, parity, max_latency_ms, max_size_mb, threads, verbose=not json_,
                          val_images=None if val_images is None else parse_count(val_images, "--val-images"))
        print_check(result, as_json=json_)
        if not result["passed"]:
            raise typer.Exit(1)
        return
    gates = run_check(model, max_latency_ms, min_accuracy, max_size_mb, data, threads, parity=parity, samples=samples)
    if json_:
        typer.echo(json.dumps({"file": str(model), "gates": gates, "passed": all(g["passed"] for g in gates)}))
    else:
        for g in gates:
            typer.echo(f"{'PASS' if g['passed'] else 'FAIL'}  {g['gate']}: {g['value']} (limit {g['limit']})")
    if not all(g["passed"] for g in gates):
        raise typer.Exit(1)


@app.command(epilog="Examples:\n\n"
             "  edgekit quickstart                 # everything, on the embedded digits\n\n"
             "  edgekit quickstart --fresh         # redo every stage instead of reusing finished ones")
def quickstart(out: Annotated[str, typer.Option(help="Folder for all runs; the report is OUT/quickstart/.")] = "runs",
               fresh: Annotated[bool, typer.Option("--fresh", help="Delete OUT first and redo every stage.")] = False,
               batch: Annotated[str, typer.Option(help="Batch sizes for the benchmark.")] = "1,8,32",
               seconds: Annotated[float, typer.Option(help="Minimum timed seconds per measurement.")] = 1.0) -> None:
    """Teacher -> distill -> reparam -> INT8 -> ONNX/TFLite/CoreML -> parity -> bench -> report.md."""
    from edgekit.recipes.quickstart import quickstart as run_quickstart

    typer.echo(str(run_quickstart(out, fresh, tuple(parse_batches(batch)), seconds)))


@app.command(epilog="Examples:\n\n"
             "  edgekit report runs/train/m0 runs/train/te          # tables + training curves -> runs/report/\n\n"
             "  edgekit report runs/train/* --out runs/report/train  # every run of a stage\n\n"
             "  edgekit report runs/distill                          # a folder holding runs\n\n"
             "  edgekit report runs/train/m0 runs/train/te --fractions 0.1,0.25,0.5,1.0   # + sample efficiency")
def report(runs: Annotated[list[Path], typer.Argument(
               help="Run folders (runs/<stage>/<name>), or folders holding runs.")],
           out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/report"),
           fractions: Annotated[str | None, typer.Option(
               help="Sample-efficiency sweep: retrain each run on these shares of its training set "
                    "(finished sweep runs are reused), e.g. 0.1,0.25,0.5,1.0.")] = None,
           quiet: Quiet = False) -> None:
    """Compare finished runs: report.md/json/csv tables, training curves and a sample-efficiency sweep (PNG)."""
    from edgekit.recipes.report import report as run_report

    paths = run_report(runs, out, parse_fractions(fractions) if fractions else None, verbose=not quiet)
    for p in paths.values():
        typer.echo(str(p))


# -- demos (edgekit/cli_demo.py): the apps run exported models through edgekit.runtime (no torch) ----------
app.add_typer(demo_app, name="demo")
# -- devices over SSH (edgekit/cli_device.py): setup, add, list, clean; --on DEVICE runs check/predict/bench there
app.add_typer(device_app, name="device")
app.command("diff", epilog=DIFF_EPILOG)(diff_command)  # edgekit/cli_diff.py: the first diverging layer


# -- parsing CLI strings (the library takes lists; these turn flags into them) ---------------------


def parse_targets(target: str) -> list[str]:
    """``--target``: names from the format table; ``all`` is every target whose packages are installed
    (ExecuTorch is an optional extra)."""
    from edgekit import formats
    from edgekit.config import parse_choices

    if target.strip() == "all":
        return formats.installed_targets()
    return parse_choices(target, formats.targets(), "--target")


def parse_backends(text: str) -> list[str]:
    """``--backend``: ``all`` is eager torch, the default formats and OpenVINO when installed; ExecuTorch is
    asked for by name."""
    from edgekit import formats
    from edgekit.config import parse_choices

    if text.strip() == "all":
        return formats.all_bench_backends()
    return parse_choices(text, formats.bench_backends(), "--backend")


def parse_batches(text: str) -> list[int]:
    """``--batch``: comma-separated positive integers."""
    from edgekit.errors import ConfigError

    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch must be comma-separated integers, got '{text}'") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batch sizes must be positive, got '{text}'")
    return batches


def parse_count(text: str, flag: str) -> int:
    """A count or ``all`` (-1)."""
    from edgekit.errors import ConfigError

    if text.strip().lower() == "all":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a count or 'all', got '{text}'") from None
    if value < 0:
        raise ConfigError(f"{flag} must be a count or 'all', got '{text}'")
    return value


def parse_fractions(text: str) -> list[float]:
    """``--fractions``: ``"0.1,0.25,0.5,1.0"`` -> sorted unique fractions in (0, 1]."""
    from edgekit.errors import ConfigError

    try:
        values = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--fractions must be numbers in (0, 1] separated by commas, got '{text}'") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ConfigError(f"--fractions must be numbers in (0, 1] separated by commas, got '{text}'")
    return values


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


_USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)  # the disk or folder the user gave


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app, turning edgekit errors into one line and exit code 2."""
    quiet_native_logs()
    try:
        with cli_messages():  # errors name flags (--skip-bad), not keywords (skip_bad)
            app(args=argv)  # standalone: usage errors print themselves and exit 2
    except EdgekitError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        if exc.filename is None and exc.errno not in _USER_ERRNOS:
            raise  # not about a file the user named or the disk they gave: a bug, keep the traceback
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        _shutdown_distributed()
    return 0


def _shutdown_distributed() -> None:
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
