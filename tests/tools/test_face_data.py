"""tools/face_data.py: a UTKFace folder and a FER2013 CSV that edgekit's face sources read."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_face_data_is_read_as_three_heads(tmp_path):
    spec = importlib.util.spec_from_file_location("face_data", ROOT / "tools" / "face_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    utk, fer = tool.make_faces(tmp_path, n=20)
    assert len(list(utk.glob("*.jpg.chip.jpg"))) == 20 and len(fer.read_text().splitlines()) == 21

    from edgekit.config import DataConfig, HeadConfig
    from edgekit.train.data import load_data

    heads = [HeadConfig(name="age", kind="regression"), HeadConfig(name="gender"), HeadConfig(name="emotion")]
    bundle = load_data(DataConfig(source=f"{utk}/+{fer}", imgsz=32), heads)
    assert {h.name for h in bundle.heads} == {"age", "gender", "emotion"}
    assert len(bundle.train) + len(bundle.val) == 40
