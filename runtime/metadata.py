"""Read the model card embedded in a model file, without torch.

Each backend reads its own files' card (``Backend.card_text``); the format table says which backend a
suffix belongs to. Where the card lives per format:

- ONNX: ``metadata_props["edgekit.card"]`` (read through onnxruntime's model metadata).
- TFLite: a ``Model.metadata`` entry named ``edgekit.card`` pointing at a buffer of UTF-8 JSON
  (read with the flatbuffer schema that ships with ai-edge-litert).
- CoreML: ``user_defined_metadata["edgekit.card"]`` (coremltools).
- ExecuTorch ``.pte``: the program's constant method ``edgekit_card`` returning the JSON (read
  with ``executorch.runtime``, which needs torch: a development-machine format here).
- OpenVINO IR ``.xml``: ``rt_info["edgekit"]["card"]`` (read with ``openvino``; no torch).
- An edgekit ``.pt`` checkpoint: its ``"card"`` entry (needs torch).
- A web bundle (a ``.web`` folder): its ``card.json``.

A ``<model file>.card.json`` beside the model is used only when the file itself carries no card
(e.g. a model exported by another tool), so users can attach a card to a foreign model.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.card import ModelCard
from edgekit.errors import CardError


class NoCardError(CardError):
    """The file carries no card (and has no sidecar): a model edgekit did not write."""


def read_card(path: str | Path, session=None) -> ModelCard:
    """The card of ``path`` (``session``: an onnxruntime session already opened on it)."""
    path = Path(path)
    if not path.exists():
        raise CardError(f"model file not found: {path}")
    text = _embedded(path, session)
    if text is None:
        sidecar = path.with_name(path.name + ".card.json")
        if sidecar.is_file():
            text = sidecar.read_text()
    if text is None:
        raise NoCardError(f"{path} carries no edgekit model card (export it with `edgekit export`, put a card in "
                          f"{path.name}.card.json beside it, or state the preprocessing: load(path, assume=...), "
                          "or --imgsz/--mean/--std/--labels on the command line)")
    return ModelCard.from_json(text)


def _embedded(path: Path, session=None) -> str | None:
    """The card JSON the file itself carries, read by its backend (None: none, or no backend knows it)."""
    from edgekit.runtime.backend import ModelFileError, backend_class

    try:
        cls = backend_class(path)
    except ModelFileError:  # an unknown suffix, or a .pt whose backend (train) is not imported: the sidecar only
        return None
    return cls.card_text(path, session)


def tflite_metadata(data: bytes, name: str) -> str | None:
    """The UTF-8 metadata buffer called ``name`` in a TFLite flatbuffer, or ``None``."""
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        return None
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == name:
            buf = model.Buffers(entry.Buffer())
            if buf.DataLength():
                return buf.DataAsNumpy().tobytes().decode("utf-8")
            if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
                return data[buf.Offset(): buf.Offset() + buf.Size()].decode("utf-8")
    return None


def card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), separators=(",", ":"))
