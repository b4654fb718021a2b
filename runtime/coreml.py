"""CoreML ``.mlpackage`` / ``.mlmodel`` files through coremltools (prediction needs macOS).

On Linux coremltools converts and inspects a file but cannot predict: such a file is "not run here"
(:meth:`CoreMLBackend.not_run_here`), its card is still read. The card is
``user_defined_metadata["edgekit.card"]``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgekit.errors import DeviceError, require
from edgekit.runtime.backend import Backend


class CoreMLBackend(Backend):
    name = "coreml"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        if self.not_run_here():
            raise DeviceError("CoreML models run only on macOS (coremltools can convert and inspect them "
                              "on Linux, not predict); use the .onnx or .tflite export here")
        ct = require("coremltools", "all")
        units = {"cpu": ct.ComputeUnit.CPU_ONLY, "mps": ct.ComputeUnit.CPU_AND_GPU}.get(device, ct.ComputeUnit.ALL)
        self.model = ct.models.MLModel(str(path), compute_units=units)
        spec = self.model.get_spec()
        self.input_name = spec.description.input[0].name
        self.image_input = spec.description.input[0].type.WhichOneof("Type") == "imageType"
        self.output_names = [o.name for o in spec.description.output]
        self.probs_name = spec.description.predictedProbabilitiesName or None
        self.classes: list[str] | None = None
        self.batch = 1
        self.device = device

    def order_outputs(self, heads: list[str]) -> None:
        if set(heads) <= set(self.output_names):
            self.output_names = list(heads)

    def set_classes(self, classes: list[str] | None) -> None:
        self.classes = classes

    def run(self, x: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - macOS only
        from PIL import Image

        feed = x
        if self.image_input:  # NHWC pixels in [0, 255]
            feed = Image.fromarray(np.clip(np.round(x[0]), 0, 255).astype(np.uint8))
        out = self.model.predict({self.input_name: feed})
        if self.probs_name:  # a classifier: {label: probability} in the card's class order
            return [np.asarray([[out[self.probs_name][c] for c in self.classes]], dtype=np.float32)]
        return [np.asarray(out[n], dtype=np.float32).reshape(1, -1) for n in self.output_names]

    @classmethod
    def card_text(cls, path: Path, session=None) -> str | None:
        """``user_defined_metadata["edgekit.card"]`` (coremltools reads it on any platform)."""
        import coremltools as ct

        from edgekit.card import CARD_KEY

        return dict(ct.utils.load_spec(str(path)).description.metadata.userDefined).get(CARD_KEY)

    @classmethod
    def not_run_here(cls) -> str | None:
        system = platform.system()
        return None if system == "Darwin" else f"CoreML prediction needs macOS, this is {system}"

    def residency(self, path: Path, feed: dict[str, np.ndarray]):  # pragma: no cover - macOS only
        return "n/a: not measured"
