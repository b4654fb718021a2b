"""Model files edgekit did not write: their input signature, synthesized inputs, and a card built from flags.

A file without a card (none embedded, no ``<file>.card.json`` beside it) is still measurable:
latency needs only inputs of the right dtype and shape, which the graph declares itself (a
``--shape`` fills its dynamic axes; a dynamic axis 0 is the batch). Predictions and accuracy also
need preprocessing and class names: :func:`card_for` takes them from the user (:class:`Assume`,
the CLI's ``--imgsz/--mean/--std/--bgr/--labels/--layout``), fills the rest with stated defaults,
and returns what it assumed, so every prediction and bench row can say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import HeadSpec, InputSpec, ModelCard
from edgekit.errors import ConfigError, either, option
from edgekit.runtime.backend import (  # noqa: F401 - TensorInfo, UnsupportedModelError: re-exported
    Backend,
    ModelFileError,
    TensorInfo,
    UnsupportedModelError,
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_SIZE = 224


class NotAnImageModel(ModelFileError):
    """Inputs that are not one image batch: the file is measurable (latency), not predictable."""


@dataclass
class Assume:
    """What the user says about a file without a card (the CLI's flags); ``None``: not given, assume."""

    imgsz: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    bgr: bool = False
    labels: str | None = None  # a text file, one class name per line (or a JSON list)
    layout: str | None = None  # NCHW or NHWC
    shapes: dict[str, list[int]] = field(default_factory=dict)  # input name ("" = the first input) -> shape

    def __post_init__(self) -> None:
        if self.layout is not None:
            if str(self.layout).upper() not in ("NCHW", "NHWC"):
                raise ConfigError(f"{option('layout')} must be nchw or nhwc, got '{self.layout}'")
            self.layout = str(self.layout).upper()
        for flag, v in ((option("mean"), self.mean), (option("std"), self.std)):
            if v is not None and (len(v) != 3 or not all(math.isfinite(float(x)) for x in v)):
                raise ConfigError(f"{flag} needs 3 finite values (one per channel), got {v}")
        if self.std is not None and min(self.std) <= 0:
            raise ConfigError(f"{option('std')} values must be positive, got {self.std}")
        if self.imgsz is not None and int(self.imgsz) < 1:
            raise ConfigError(f"{option('imgsz')} must be positive, got {self.imgsz}")
        self.labels = None if self.labels is None else str(self.labels)

    @classmethod
    def of(cls, value: Assume | dict[str, Any] | None) -> Assume:
        return value if isinstance(value, Assume) else cls(**(value or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the graph's own signature --------------------------------------------------------------------


def signature(backend: Backend, where: str = "the model") -> list[TensorInfo]:
    """The inputs of an opened file, as the graph declares them (an error for non-numeric inputs)."""
    return backend.input_tensors(where)


def outputs(backend: Backend) -> list[TensorInfo]:
    """The outputs, in the order the backend returns them."""
    return backend.output_tensors()


# -- synthesized inputs ---------------------------------------------------------------------------


def _shape(name: str, dims: list[int] | None = None) -> str:
    """An input's shape as the user gives it: ``--shape x:1,3,224,224`` / ``shapes={'x': [1, 3, 224, 224]}``."""
    if dims is None:
        return either(f"--shape {name}", f"shapes['{name}']")
    return either(f"--shape {name}:{','.join(map(str, dims))}", f"shapes={{'{name}': {list(dims)}}}")


def input_shapes(inputs: list[TensorInfo], batch: int, shapes: dict[str, list[int]] | None = None) -> dict[str, tuple]:
    """The shape fed to each input: ``shapes`` (``--shape``) fill dynamic axes; a dynamic axis 0 is ``batch``."""
    given = {k: [int(d) for d in v] for k, v in (shapes or {}).items()}
    names = [t.name for t in inputs]
    if "" in given and inputs:
        given.setdefault(names[0], given[""])
    unknown = [k for k in given if k and k not in names]
    if unknown:
        raise ConfigError(f"{_shape(unknown[0])}: no such input (inputs: {', '.join(names)})")
    out = {}
    for t in inputs:
        want = given.get(t.name)
        if want is not None:
            if len(want) != len(t.shape):
                raise ConfigError(f"{_shape(t.name, want)} has {len(want)} axes; input "
                                  f"'{t.name}' is {t.describe()}")
            bad = [i for i, (g, w) in enumerate(zip(t.shape, want, strict=True)) if g is not None and g != w]
            if bad:
                raise ConfigError(f"{_shape(t.name, want)}: axis {bad[0]} of input '{t.name}' "
                                  f"is fixed at {t.shape[bad[0]]} ({t.describe()})")
            dims = [batch if i == 0 and t.shape[0] is None else d for i, d in enumerate(want)]
        else:
            dynamic = [i for i, d in enumerate(t.shape) if d is None and i]
            if dynamic:
                example = [batch if i == 0 else d or DEFAULT_SIZE for i, d in enumerate(t.shape)]
                raise ConfigError(f"input '{t.name}' is {t.describe()} with dynamic axes: give its shape, e.g. "
                                  f"{_shape(t.name, example)}")
            dims = [batch if d is None else d for d in t.shape]
        out[t.name] = tuple(dims)
    return out


def synthesize(inputs: list[TensorInfo], shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of each input's dtype: normal floats, small integers (full range for 8-bit codes), bools."""
    rng = np.random.default_rng(seed)
    feed = {}
    for t in inputs:
        shape = shapes[t.name]
        if t.dtype.kind == "f":
            feed[t.name] = rng.standard_normal(shape).astype(t.dtype)
        elif t.dtype.kind == "b":
            feed[t.name] = rng.random(shape) < 0.5
        elif t.dtype.itemsize == 1:
            info = np.iinfo(t.dtype)
            feed[t.name] = rng.integers(info.min, info.max, shape, endpoint=True).astype(t.dtype)
        else:  # indices, lengths: small values are valid for most graphs
            feed[t.name] = rng.integers(0, 10, shape).astype(t.dtype)
    return feed


def raw_runner(backend: Backend, feed: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
    """A call that runs the backend's session on ``feed`` as is (every input, every output), set up once."""
    return backend.raw_runner(feed)


# -- a card from the graph and the flags ----------------------------------------------------------


def read_labels(path: str | Path) -> list[str]:
    """Class names: a text file with one name per line (blank lines at the end ignored), or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{option('labels', str(path))}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
        names = json.loads(text) if path.suffix.lower() == ".json" else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{option('labels', str(path))}: not a UTF-8 text file of class names ({exc})") from None
    if path.suffix.lower() == ".json":
        if not isinstance(names, list):
            raise ConfigError(f"{option('labels', str(path))}: a JSON labels file must hold a list of names")
        return [str(n) for n in names]
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ConfigError(f"{option('labels', str(path))} is empty")
    return names


def card_for(path: str | Path, backend: Backend, assume: Assume | dict | None = None) -> tuple[ModelCard, dict]:
    """A card for a file without one, from its graph signature and ``assume``; and what was assumed."""
    path, assume = Path(path), Assume.of(assume)
    inputs = signature(backend, path.name)
    if len(inputs) != 1:
        raise NotAnImageModel(f"{path.name} takes {len(inputs)} inputs ({', '.join(t.name for t in inputs)}): "
                              "predictions need one image input; `edgekit bench` measures its latency")
    t = inputs[0]
    assumed: dict[str, Any] = {}
    layout = assume.layout or _layout(t, path.name)
    if not assume.layout:
        assumed["layout"] = layout
    if len(t.shape) != 4 or t.shape[1 if layout == "NCHW" else 3] not in (3, None):
        raise NotAnImageModel(f"{path.name}: input '{t.name}' is {t.describe()}, not a batch of 3-channel images "
                              f"in {layout}: `edgekit bench` still measures its latency")
    hw = list(t.shape[2:] if layout == "NCHW" else t.shape[1:3])
    if assume.imgsz and any(d is not None and d != assume.imgsz for d in hw):
        raise ConfigError(f"{option('imgsz', assume.imgsz)}: input '{t.name}' of {path.name} is fixed at "
                          f"{hw[0]}x{hw[1]} ({t.describe()})")
    if None in hw and not assume.imgsz:
        assumed["imgsz"] = DEFAULT_SIZE
    size = [d or assume.imgsz or DEFAULT_SIZE for d in hw]
    quant = None
    if t.dtype.kind in "iu":  # an integer image tensor: raw pixel codes, unless told otherwise
        scale, zero = t.quant or (1.0, 0)
        quant = {"scale": scale, "zero_point": zero}
        default_mean = [(zero - np.iinfo(t.dtype).min) / 255.0] * 3
        default_std = [1.0 / (255.0 * scale)] * 3
        why = "raw pixel codes (integer input)"
    else:
        default_mean, default_std, why = IMAGENET_MEAN, IMAGENET_STD, "ImageNet"
    if assume.mean is None or assume.std is None:
        assumed["normalization"] = why
    if assume.mean is None:
        assumed["mean"] = [round(m, 6) for m in default_mean]
    if assume.std is None:
        assumed["std"] = [round(s, 6) for s in default_std]
    if not assume.bgr:
        assumed["color"] = "RGB"
    assumed["resize"] = "short side to the input size, centre crop, bilinear"
    spec = InputSpec(size=size, mean=assume.mean or default_mean, std=assume.std or default_std,
                     color="BGR" if assume.bgr else "RGB", layout=layout, quant=quant,
                     dtype=t.dtype.name if quant else "float32")
    heads = _heads(path, backend, outputs(backend), spec, assume, assumed)
    card = ModelCard(name=path.stem, arch="unknown", heads=heads, input=spec,
                     provenance={"stage": "foreign", "card": "built from the graph signature and flags",
                                 "assumed": assumed, "labels": assume.labels})
    return card, assumed


def _layout(t: TensorInfo, where: str) -> str:
    if len(t.shape) == 4:
        if t.shape[1] == 3:
            return "NCHW"
        if t.shape[3] == 3:
            return "NHWC"
    raise NotAnImageModel(f"{where}: input '{t.name}' is {t.describe()}: no axis of 3 channels at 1 (NCHW) or 3 "
                          f"(NHWC); give {option('layout')} for an image model, `edgekit bench` still measures "
                          "its latency")


def _heads(path: Path, backend: Backend, outs: list[TensorInfo], spec: InputSpec, assume: Assume,
           assumed: dict) -> list[HeadSpec]:
    widths = [math.prod(o.shape[1:]) if None not in o.shape[1:] else None for o in outs]
    if None in widths:  # symbolic output shapes: one dry run on zeros tells the widths
        shape = (1, 3, *spec.size) if spec.layout == "NCHW" else (1, *spec.size, 3)
        widths = [int(np.prod(o.shape[1:])) for o in backend.run(np.zeros(shape, np.float32))]
    labels = read_labels(assume.labels) if assume.labels else None
    labelled = next((i for i, w in enumerate(widths) if w > 1), None)
    if labels is not None and (labelled is None or widths[labelled] != len(labels)):
        what = (f"output '{outs[labelled].name}' has {widths[labelled]} values" if labelled is not None
                else f"no output has more than one value ({', '.join(map(str, widths))})")
        raise ConfigError(f"{option('labels', str(assume.labels))} has {len(labels)} names but {what}")
    heads, kinds = [], {}
    for i, (o, w) in enumerate(zip(outs, widths, strict=True)):
        name = o.name or f"output_{i}"
        if w == 1:
            heads.append(HeadSpec(name, "regression"))
            kinds[name] = "regression (the raw value)"
        else:
            given = labels if i == labelled and labels is not None else None
            heads.append(HeadSpec(name, "classification", given or [str(k) for k in range(w)]))
            kinds[name] = "classification (softmax of the raw outputs)" + ("" if given else ", classes are indices")
    assumed["heads"] = kinds
    return heads


def assumed_note(path: str | Path, assumed: dict) -> str:
    """One line for the console: which preprocessing and decoding were assumed for a card-less file."""
    parts = [f"{k}={v if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in assumed.items()]
    return f"{Path(path).name} carries no edgekit card; assumed {'; '.join(parts)}"
