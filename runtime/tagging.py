"""Sound models on the device: a file or a waveform -> windows -> log-mel -> the model -> tags.

A sound is decoded and resampled by :mod:`edgekit.runtime.audio_io`, cut into the windows the card's
frontend says (``window_s`` long, every ``hop_s``; the last one ends at the last sample; a sound
shorter than a window is zero-padded), turned into normalized log-mel spectrograms by
:mod:`edgekit.runtime.logmel` (the code training used) and run in batches. The result holds:

- ``predictions``: the whole sound, from the windows' raw outputs aggregated as in training (``mean``
  or ``max`` of the logits, the card's ``aggregate``), decoded like any prediction;
- ``windows``: each window's ``start`` / ``end`` (seconds) and prediction;
- ``events``: per head, the time spans where a tag is on: for a multilabel head the runs of windows
  whose probability reaches the head's threshold, for a classification head the runs of windows with
  the same top class; each with its ``start``, ``end`` and peak ``score``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtime.audio_io import AUDIO_SUFFIXES, AudioError, read_audio, resample, to_mono
from edgekit.runtime.logmel import AudioFrontend, aggregate
from edgekit.runtime.prediction_text import format_prediction
from edgekit.runtime.preprocess import InputError, quantize

BATCH = 32


def frontend(predictor) -> AudioFrontend:
    """The predictor's frontend, built once from its card."""
    fe = getattr(predictor, "_frontend", None)
    if fe is None:
        if not predictor.card.input.audio:
            raise InputError(f"{predictor.path.name} is not a sound model (its card has no audio frontend)")
        fe = predictor._frontend = AudioFrontend.from_dict(predictor.card.input.audio)
    return fe


def sound_batch(predictor, windows: np.ndarray) -> np.ndarray:
    """Waveform windows ``[W, window samples]`` (or one) -> the model's input batch: normalized log-mel
    in the card's layout, quantized when the file takes an integer tensor."""
    return audio_batch(windows, predictor.card.input, frontend(predictor))


def audio_batch(windows: np.ndarray, spec, fe: AudioFrontend | None = None) -> np.ndarray:
    """:func:`sound_batch` from a card's input contract (``spec``: an :class:`~edgekit.card.InputSpec`)."""
    fe = fe or AudioFrontend.from_dict(spec.audio)
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != fe.window_samples or len(x) == 0:
        raise InputError(f"a sound model takes windows of {fe.window_samples} samples at {fe.sample_rate} Hz "
                         f"([W, {fe.window_samples}]), got shape {np.shape(windows)}; tag() cuts a sound into them")
    batch = fe.features(x, spec.mean[0], spec.std[0])
    if spec.layout == "NHWC":
        batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    if spec.quant:
        batch = quantize(batch, spec.dtype, spec.quant["scale"], spec.quant["zero_point"])
    return batch


def load_sound(sound: str | Path | np.ndarray, sample_rate: int | None, target: int) -> np.ndarray:
    """A file (decoded, mono, resampled) or a waveform ``[samples]`` / ``[samples, channels]`` at
    ``sample_rate`` -> mono float32 at ``target`` Hz."""
    if isinstance(sound, (str, Path)):
        return read_audio(sound, target)
    if sample_rate is None:
        raise AudioError("a waveform needs its sample_rate")
    wave = to_mono(sound)
    if len(wave) == 0:
        raise AudioError("the waveform has no samples")
    if not np.isfinite(wave).all():
        raise AudioError("the waveform has samples that are not finite (NaN or inf)")
    return resample(wave, int(sample_rate), target)


def tag(predictor, sound: str | Path | np.ndarray, sample_rate: int | None = None, topk: int = 5,
        hop_s: float | None = None, mode: str | None = None) -> dict[str, Any]:
    """Tag a whole sound (see the module docstring). ``hop_s`` and ``mode`` (``mean``/``max``) override
    the card's window hop and aggregation."""
    fe = frontend(predictor)
    if hop_s is not None:
        fe = AudioFrontend(**{**{k: v for k, v in fe.to_dict().items() if k != "frames"}, "hop_s": float(hop_s)})
    wave = load_sound(sound, sample_rate, fe.sample_rate)
    outputs, starts = window_outputs(predictor, wave, fe)
    mode = mode or fe.aggregate
    whole = predictor.decode({h: aggregate(o, mode)[None] for h, o in outputs.items()}, topk)[0]
    per_window = predictor.decode(outputs, topk)
    sr, duration = fe.sample_rate, len(wave) / fe.sample_rate
    spans = [(s / sr, min(duration, (s + fe.window_samples) / sr)) for s in starts]
    result: dict[str, Any] = {"duration_s": round(duration, 3), "windows": len(starts), "window_s": fe.window_s,
                              "hop_s": fe.hop_s, "aggregate": mode, "predictions": whole,
                              "events": {h.name: events(h, [p[h.name] for p in per_window], spans)
                                         for h in predictor.card.heads if h.kind != "regression"},
                              "timeline": [{"start": round(a, 3), "end": round(b, 3), "predictions": p}
                                           for (a, b), p in zip(spans, per_window, strict=True)]}
    if isinstance(sound, (str, Path)):
        result = {"source": str(sound), **result}
    return result


def window_outputs(predictor, wave: np.ndarray, fe: AudioFrontend | None = None
                   ) -> tuple[dict[str, np.ndarray], list[int]]:
    """Raw outputs ``{head: [W, C]}`` of every window of a mono waveform (at the frontend's rate), and the
    windows' start samples."""
    fe = fe or frontend(predictor)
    windows, starts = fe.windows(wave)
    parts = [predictor.run(sound_batch(predictor, windows[i: i + BATCH])) for i in range(0, len(windows), BATCH)]
    return {h: np.concatenate([p[h] for p in parts]) for h in predictor.card.head_names}, starts


def sound_outputs(predictor, sound: str | Path | np.ndarray, sample_rate: int | None = None) -> dict[str, np.ndarray]:
    """Raw outputs ``{head: [C]}`` of a whole sound: its windows' outputs aggregated as the card says."""
    fe = frontend(predictor)
    outputs, _ = window_outputs(predictor, load_sound(sound, sample_rate, fe.sample_rate), fe)
    return {h: aggregate(o, fe.aggregate) for h, o in outputs.items()}


def events(head, preds: list[dict[str, Any]], spans: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Runs of consecutive windows where a tag is on, as ``{"label", "start", "end", "score"}``, by start."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for (start, end), p in zip(spans, preds, strict=True):
        on = ({c: s for c, s in p["scores"].items() if s >= head.threshold} if head.kind == "multilabel"
              else {p["label"]: p["score"]})
        for label in [c for c in open_ if c not in on]:
            out.append(open_.pop(label))
        for label, score in on.items():
            ev = open_.setdefault(label, {"label": label, "start": round(start, 3), "end": round(end, 3),
                                          "score": score})
            ev["end"], ev["score"] = round(end, 3), max(ev["score"], score)
    out += open_.values()
    return sorted(out, key=lambda e: (e["start"], e["label"]))


def tag_source(predictor, source: Path, topk: int = 1) -> list[dict[str, Any]]:
    """``edgekit predict`` with a sound model: one sound file, or every sound file of a folder (a bad
    file in a folder is reported and skipped)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise InputError(f"{source} has no sound files ({', '.join(AUDIO_SUFFIXES)})")
    else:
        files = [source]
    results = []
    for f in files:
        try:
            results.append(tag(predictor, f, topk=topk))
        except AudioError as exc:
            if not source.is_dir():
                raise
            results.append({"source": str(f), "error": str(exc)})
    if all("error" in r for r in results):
        raise InputError(f"no readable sound file in {source}")
    return results


def format_tags(result: dict[str, Any]) -> str:
    """One line per sound: its tags, then the timed events (long sounds)."""
    line = f"{result['source']} ({result['duration_s']:.1f} s): {format_prediction(result['predictions'])}"
    if result["windows"] > 1:
        spans = [f"{e['label']} {e['start']:.2f}-{e['end']:.2f}s ({e['score']:.2f})"
                 for evs in result["events"].values() for e in evs]
        line += "\n  events: " + (", ".join(spans) if spans else "none")
    return line


def print_tags(results: list[dict[str, Any]]) -> None:
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
        else:
            print(format_tags(r))
