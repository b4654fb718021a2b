"""``load(path)`` -> :class:`Predictor`: one API over ONNX, TFLite, CoreML and torch checkpoints.

The predictor reads the model card from the file, preprocesses images with it, runs the backend
and decodes each head: top-k labels with probabilities (classification), labels over a threshold
(multilabel), a value (regression). A clip model (``card.input.frames`` = T) takes clips: a list
of frames (or an ``[F, H, W, 3]`` array) per clip; a clip of F != T frames is sampled down or up
to T the way training formed clips (the centre frame of each of T equal segments).

Errors in the input (an empty frame, a wrong dtype) raise
:class:`~edgekit.runtime.preprocess.InputError` and leave the predictor usable, so a long-running
app can log and go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.card import ModelCard, clip_frame_indices
from edgekit.runtime.backends import (
    Backend,
    ModelFileError,
    check_card_matches,
    open_backend,
    run_in_chunks,
)
from edgekit.runtime.metadata import NoCardError, read_card
from edgekit.runtime.preprocess import InputError, preprocess, read_image

if TYPE_CHECKING:
    from edgekit.runtime.foreign import Assume

Image = str | Path | np.ndarray


class Predictor:
    """A loaded model: ``predict(images)`` for decoded results, ``run(batch)`` for raw outputs."""

    def __init__(self, backend: Backend, card: ModelCard, path: Path) -> None:
        self.backend, self.card, self.path = backend, card, path
        backend.order_outputs(card.head_names)
        if hasattr(backend, "set_classes"):
            backend.set_classes(card.heads[0].classes)
        if hasattr(backend, "set_card"):  # TFLite: the card's golden inputs prove a batch before it is used
            backend.set_card(card)
        self.layout = card.input.layout
        self.frames = card.input.frames
        c = card.input.channels  # 1 for a sound model's log-mel
        self._shape = (c, *card.input.size) if self.layout == "NCHW" else (*card.input.size, c)
        if self.frames:
            self._shape = (self.frames, *self._shape)
        self._heads = card.head_names
        # a file without a card: what its card built from the graph and flags assumed ({} otherwise)
        self.assumed: dict[str, Any] = dict(card.provenance.get("assumed") or {})
        native = card.input.dtype if card.input.quant else "float32"
        self._dtypes = {np.dtype("float32"), np.dtype(native)}

    def __repr__(self) -> str:
        where = f"{self.backend.name} on {self.backend.device}"
        return f"Predictor({self.path.name}, {where}, heads={self.card.head_names})"

    # -- raw -------------------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw float32 outputs per head for a preprocessed batch ``[N, *input shape]``.

        ``batch`` is float32, or already in the file's integer input type (what :meth:`preprocess`
        returns for full-INT8 models). This is the hot path: checks are cheap, work is the backend's.
        """
        if not (isinstance(batch, np.ndarray) and batch.shape[1:] == self._shape
                and batch.dtype in self._dtypes and batch.ndim == len(self._shape) + 1):
            self._reject(batch)
        fixed = self.backend.batch
        if fixed is None or fixed == len(batch):
            outs = self.backend.run(batch)
        else:  # a file exported with a fixed batch: run in chunks, padding the last one
            outs = run_in_chunks(self.backend.run, batch, fixed)
        return {name: (o if o.ndim == 2 else o.reshape(len(batch), -1)) for name, o in zip(self._heads, outs,
                                                                                          strict=False)}

    def _reject(self, batch) -> None:
        got = f"{batch.dtype} {batch.shape}" if isinstance(batch, np.ndarray) else type(batch).__name__
        raise InputError(f"expected a batch of shape [N, {', '.join(map(str, self._shape))}] ({self.layout}) "
                         f"of {' or '.join(sorted(d.name for d in self._dtypes))}, got {got} "
                         "(use predict() for images)")

    def preprocess(self, images: Image | Sequence[Image], color: str = "BGR") -> np.ndarray:
        """Images (paths, HxWx3 uint8 arrays, or a list of them) -> the model's input batch.

        Clip models: one clip (a list of frames or an ``[F, H, W, 3]`` array) or a list of clips.
        Sound models: waveform windows, see :mod:`edgekit.runtime.tagging`."""
        if self.card.input.audio:
            from edgekit.runtime.tagging import sound_batch

            return sound_batch(self, images)
        if not self.frames:
            return preprocess(self._frames(images), self.card.input, color)
        clips = self._clips(images)
        flat = preprocess([f for clip in clips for f in clip], self.card.input, color)
        return flat.reshape(len(clips), *self._shape)

    # -- decoded ---------------------------------------------------------------------------------
    def predict(self, images: Image | Sequence[Image], topk: int = 5, color: str = "BGR") -> list[dict[str, Any]]:
        """One dict per image: ``{head: {"label", "score", "top"} | {"labels", "scores"} | {"value"}}``.

        A sound model takes waveform windows (``[W, window samples]`` at the card's rate); to tag a
        sound file or a longer recording use :meth:`tag`."""
        return self.decode(self.run(self.preprocess(images, color)), topk)

    def tag(self, sound: str | Path | np.ndarray, sample_rate: int | None = None, topk: int = 5,
            **options: Any) -> dict[str, Any]:
        """A sound model on a file or a waveform: tags of the whole sound, per window and as timed events
        (:func:`edgekit.runtime.tagging.tag`)."""
        from edgekit.runtime.tagging import tag

        return tag(self, sound, sample_rate=sample_rate, topk=topk, **options)

    __call__ = predict

    def decode(self, outputs: dict[str, np.ndarray], topk: int = 5) -> list[dict[str, Any]]:
        n = len(next(iter(outputs.values())))
        results: list[dict[str, Any]] = [{} for _ in range(n)]
        activated = bool(self.card.provenance.get("outputs_activated"))
        for head in self.card.heads:
            out = outputs[head.name]
            if head.kind == "classification":
                probs = out if activated else softmax(out)
                k = min(topk, probs.shape[1])
                order = np.argsort(-probs, axis=1)[:, :k]
                for i in range(n):
                    top = [(head.classes[j], float(probs[i, j])) for j in order[i]]
                    results[i][head.name] = {"label": top[0][0], "score": top[0][1], "top": top}
            elif head.kind == "multilabel":
                probs = out if activated else 1.0 / (1.0 + np.exp(-out))
                for i in range(n):
                    scores = {c: float(p) for c, p in zip(head.classes, probs[i], strict=True)}
                    results[i][head.name] = {"labels": [c for c, p in scores.items() if p >= head.threshold],
                                             "scores": scores}
            else:
                for i in range(n):
                    results[i][head.name] = {"value": float(out[i, 0])}
        return results

    def _clips(self, clips) -> list[list[np.ndarray]]:
        """One clip or a list of clips -> lists of exactly ``self.frames`` frames each."""
        one = (isinstance(clips, np.ndarray) and clips.ndim == 4) or (
            isinstance(clips, Sequence) and len(clips) > 0
            and all(isinstance(f, (str, Path)) or (isinstance(f, np.ndarray) and f.ndim in (2, 3)) for f in clips))
        if one:
            clips = [clips]
        elif isinstance(clips, np.ndarray) and clips.ndim == 5:
            clips = list(clips)
        if not isinstance(clips, Sequence) or isinstance(clips, (str, bytes)) or len(clips) == 0:
            raise InputError(f"a clip model ({self.frames} frames) takes a clip (a list of frames or an "
                             "[F, H, W, 3] array) or a list of clips")
        out = []
        for i, clip in enumerate(clips):
            frames = self._frames(clip) if len(clip) else []
            if not frames:
                raise InputError(f"clip {i} has no frames")
            out.append([frames[j] for j in clip_frame_indices(0, len(frames) - 1, self.frames)])
        return out

    def _frames(self, images: Image | Sequence[Image]) -> list[np.ndarray]:
        if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            images = [images]
        elif isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)) or len(images) == 0:
            raise InputError("expected an image path, an HxWx3 uint8 array, or a non-empty list of them")
        return [read_image(x) if isinstance(x, (str, Path)) else x for x in images]


def load(path: str | Path, device: str = "auto", threads: int | None = None,
         assume: Assume | dict[str, Any] | None = None) -> Predictor:
    """Open a model file (``.onnx``, ``.tflite``, ``.mlpackage``/``.mlmodel``, edgekit ``.pt``).

    ``assume`` (an :class:`~edgekit.runtime.foreign.Assume` or its fields as a dict; ``{}``: all defaults)
    opens a file without a card: its card is built from the graph and ``assume``, and
    :attr:`Predictor.assumed` says what was assumed. Without it such a file is refused."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    backend = open_backend(path, device=device, threads=threads)
    card = getattr(backend, "card", None)  # a checkpoint's backend holds its card
    if card is None:
        try:
            card = read_card(path, session=getattr(backend, "session", None))
        except NoCardError:
            if assume is None:
                raise
            from edgekit.runtime.foreign import card_for

            card, _ = card_for(path, backend, assume)
    check_card_matches(card, backend, path)
    return Predictor(backend, card, path)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``[N, C]`` (numerically stable)."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
