"""The model card: everything needed to use a model, travelling inside every file edgekit writes.

A checkpoint stores it under ``"card"``, ``card.json`` sits in every run folder, and each exported
file embeds it (ONNX ``metadata_props``, CoreML ``user_defined_metadata``, TFLite metadata). The
runtime reads it to preprocess inputs and decode outputs, so it must never need anything else.
This module is pure Python: the on-device runtime imports it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgekit.errors import CardError

CARD_VERSION = 1
HEAD_KINDS = ("classification", "multilabel", "regression")
CARD_KEY = "edgekit.card"  # metadata key used by the exporters


@dataclass
class HeadSpec:
    """One named output of a model."""

    name: str
    kind: str  # classification | multilabel | regression
    classes: list[str] | None = None  # class names (classification, multilabel)
    outputs: int = 1  # width of the output vector
    threshold: float = 0.5  # multilabel decision threshold on the sigmoid
    # Regression: the head was trained on (y - target_mean) / target_std. Record only: edgekit folds
    # this scaling into the head's last layer, so the model and its files already output y (None: no scaling).
    target_mean: float | None = None
    target_std: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise CardError(f"head '{self.name}': kind must be one of {', '.join(HEAD_KINDS)}, got '{self.kind}'")
        if (self.target_mean is None) != (self.target_std is None):
            raise CardError(f"head '{self.name}': target_mean and target_std go together")
        if self.target_mean is not None:
            if self.kind != "regression":
                raise CardError(f"head '{self.name}' ({self.kind}): target_mean / target_std are for regression heads")
            self.target_mean, self.target_std = float(self.target_mean), float(self.target_std)
            if not (math.isfinite(self.target_mean) and math.isfinite(self.target_std) and self.target_std > 0):
                raise CardError(f"head '{self.name}': target_std must be positive and both finite, got "
                                f"{self.target_mean}, {self.target_std}")
        if self.kind != "regression":
            if not self.classes:
                raise CardError(f"head '{self.name}' ({self.kind}) needs class names")
            self.classes = [str(c) for c in self.classes]
            self.outputs = len(self.classes)


@dataclass
class InputSpec:
    """How to turn an image into the model's input tensor."""

    size: list[int]  # [height, width]
    mean: list[float]  # per channel, for pixels scaled to [0, 1]
    std: list[float]
    color: str = "RGB"  # channel order the model expects
    layout: str = "NCHW"
    dtype: str = "float32"
    interpolation: str = "bilinear"
    crop_pct: float = 1.0  # resize the short side to size/crop_pct, then centre-crop
    quant: dict[str, float] | None = None  # {"scale", "zero_point"} when the input tensor is integer
    frames: int | None = None  # clip models: frames per clip; the tensor is [N, T, C, H, W] (NCHW) or [N, T, H, W, C]
    # audio models: the log-mel frontend's parameters (edgekit.runtime.logmel.AudioFrontend); the input is one
    # channel, [n_mels, frames] = size, normalized with mean[0] / std[0]
    audio: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            self.size = [self.size, self.size]
        self.size = [int(s) for s in self.size]
        if len(self.size) != 2 or min(self.size) <= 0:
            raise CardError(f"input size must be [height, width] with positive values, got {self.size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise CardError(f"input mean and std must have {self.channels} value{'s' * (self.channels > 1)} "
                            f"(one per channel)")
        self.mean = [float(m) for m in self.mean]
        self.std = [float(s) for s in self.std]
        if self.color not in ("RGB", "BGR"):
            raise CardError(f"input color must be RGB or BGR, got '{self.color}'")
        if self.layout not in ("NCHW", "NHWC"):
            raise CardError(f"input layout must be NCHW or NHWC, got '{self.layout}'")
        if self.frames is not None and int(self.frames) < 1:
            raise CardError(f"input frames must be a positive number of frames per clip, got {self.frames}")
        if self.audio is not None and not isinstance(self.audio, dict):
            raise CardError("input audio must be an object (the log-mel frontend's parameters)")

    @property
    def channels(self) -> int:
        """Channels of the input tensor: 1 (a log-mel spectrogram) for audio models, else 3."""
        return 1 if self.audio else 3


@dataclass
class ModelCard:
    """Architecture, heads, input contract, metrics and provenance of one model."""

    name: str
    arch: str
    heads: list[HeadSpec]
    input: InputSpec
    params: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Per-output integer quantization ({head: {"scale", "zero_point"}}) for files with int8 outputs.
    output_quant: dict[str, dict[str, float]] | None = None
    # Clip models: how frame embeddings become one ({"pooling": "mean|attention|transformer", "cross": [a, b]}).
    temporal: dict[str, Any] | None = None
    # A few real validation inputs and PyTorch's outputs on them (edgekit.export.golden):
    # ``edgekit check FILE --parity`` re-verifies the file with no training data.
    golden: dict[str, Any] | None = None
    version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if not self.heads:
            raise CardError("a model card needs at least one head")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise CardError(f"head names must be unique, got {names}")

    # -- access -------------------------------------------------------------------------------
    def head(self, name: str) -> HeadSpec:
        for h in self.heads:
            if h.name == name:
                return h
        raise CardError(f"no head named '{name}' (heads: {', '.join(h.name for h in self.heads)})")

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    @property
    def temporal_spec(self) -> dict[str, Any] | None:
        """What :class:`edgekit.train.models.EdgeModel` needs to rebuild a clip model (None: images)."""
        if not self.input.frames:
            return None
        return {"frames": self.input.frames, **(self.temporal or {"pooling": "mean"})}

    def derive(self, **provenance: Any) -> ModelCard:
        """A copy with ``provenance`` entries added (each stage records what it did)."""
        new = ModelCard.from_dict(json.loads(self.to_json()))
        new.provenance.update(provenance)
        return new

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_plain)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        if not isinstance(data, dict):
            raise CardError("model card must be a JSON object")
        missing = [k for k in ("name", "arch", "heads", "input") if k not in data]
        if missing:
            raise CardError(f"model card is missing {', '.join(missing)}")
        version = int(data.get("version", CARD_VERSION))
        if version > CARD_VERSION:
            raise CardError(f"model card version {version} is newer than this edgekit understands ({CARD_VERSION})")
        try:
            heads = [HeadSpec(**_known(HeadSpec, h)) for h in data["heads"]]
            inp = InputSpec(**_known(InputSpec, data["input"]))
        except TypeError as exc:
            raise CardError(f"model card is malformed: {exc}") from exc
        rest = {k: v for k, v in _known(cls, data).items() if k not in ("heads", "input")}
        return cls(heads=heads, input=inp, **rest)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardError(f"model card is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def clip_frame_indices(start: int, stop: int, n: int, rng: Any = None) -> list[int]:
    """``n`` frame indices in ``[start, stop]``: the centre of each of ``n`` equal segments, or with
    ``rng`` (a ``numpy.random.Generator``) a random frame in each. Training and the runtime both form
    clips this way, so a clip the runtime builds from a video matches what the model learned from."""
    length = stop - start + 1
    offsets = [0.5] * n if rng is None else [float(r) for r in rng.random(n)]
    return [min(stop, max(start, start + int((k + offsets[k]) * length / n))) for k in range(n)]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys ``cls`` knows, so older edgekits can read cards with new optional fields."""
    if not isinstance(data, dict):
        raise CardError(f"model card field for {cls.__name__} must be an object")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
