"""Face sources for the kiosk model: FER2013's fer2013.csv, UTKFace file names, and ``a+b`` joins."""

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError
from edgekit.train.data import FER_EMOTIONS, ImageDataset, build_transforms, load_data
from edgekit.train.losses import TaskLoss


def write_fer(path, rows):
    """rows: (emotion, usage) pairs; pixels are a seeded random 48x48 face-sized patch."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for emotion, usage in rows:
        pixels = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
        lines.append(f"{emotion},{pixels},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_utk(folder, n=12):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        age, gender, race = 5 + 6 * i, i % 2, i % 5
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"{age}_{gender}_{race}_2017010{i:02d}.jpg.chip.jpg")
    return folder


def test_fer2013_usage_splits_and_images(tmp_path):
    rows = [(i % 7, "Training") for i in range(14)] + [(3, "PublicTest"), (4, "PrivateTest")]
    b = load_data(DataConfig(source=str(write_fer(tmp_path / "fer2013.csv", rows)), imgsz=24), [])
    assert (len(b.train), len(b.val), b.kind) == (14, 2, "faces")
    assert [h.name for h in b.heads] == ["emotion"] and b.heads[0].classes == FER_EMOTIONS
    assert b.train.targets["emotion"].tolist() == [i % 7 for i in range(14)]
    assert b.val.targets["emotion"].tolist() == [3, 4]
    img = b.train.load(0)
    assert img.size == (48, 48) and img.mode == "RGB"
    assert b.train.names[0].endswith("fer2013.csv:2")


def test_fer2013_without_val_rows_is_split(tmp_path):
    path = write_fer(tmp_path / "f.csv", [(i % 2, "Training") for i in range(20)])
    b = load_data(DataConfig(source=str(path)), [])
    assert (len(b.train), len(b.val)) == (16, 4)


def test_fer2013_bad_rows_are_named_or_skipped(tmp_path):
    path = write_fer(tmp_path / "f.csv", [(i % 2, "Training") for i in range(10)])
    with path.open("a") as fh:
        fh.write("9,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"f\.csv:12: emotion '9'"):
        load_data(DataConfig(source=str(path)), [])
    b = load_data(DataConfig(source=str(path), skip_bad=True), [])
    assert len(b.train) + len(b.val) == 10 and b.skipped == [f"{path}:12"]


def test_utkface_names_heads_and_split(tmp_path):
    b = load_data(DataConfig(source=str(write_utk(tmp_path / "utk"))), [])
    assert [h.name for h in b.heads] == ["age", "gender"] and b.kind == "faces"
    assert b.heads[1].classes == ["male", "female"]
    assert len(b.train) + len(b.val) == 12
    ages = np.concatenate([b.train.targets["age"], b.val.targets["age"]])
    assert sorted(ages.tolist()) == [5.0 + 6 * i for i in range(12)] and ages.dtype == np.float32
    assert set(b.val.targets["gender"].tolist()) == {0, 1}  # stratified by gender
    race = load_data(DataConfig(source=str(tmp_path / "utk")), [HeadConfig(name="race")])
    assert [h.name for h in race.heads] == ["race"]


def test_utkface_bad_name_is_named_or_skipped(tmp_path):
    folder = write_utk(tmp_path / "utk")
    Image.new("RGB", (8, 8)).save(folder / "39_1_20170116174525125.jpg")  # no race: a known UTKFace defect
    with pytest.raises(DataError, match="39_1_20170116174525125.jpg: not a UTKFace name"):
        load_data(DataConfig(source=str(folder)), [])
    b = load_data(DataConfig(source=str(folder), skip_bad=True), [])
    assert len(b.train) + len(b.val) == 12 and len(b.skipped) == 1


def test_heads_a_face_source_does_not_have(tmp_path):
    with pytest.raises(ConfigError, match="provides the heads age, gender, race"):
        load_data(DataConfig(source=str(write_utk(tmp_path / "utk"))), [HeadConfig(name="emotion")])
    with pytest.raises(ConfigError, match="is regression, not classification"):
        load_data(DataConfig(source=str(tmp_path / "utk")), [HeadConfig(name="age")])


def test_joined_sources_mask_missing_labels(tmp_path):
    write_utk(tmp_path / "utk")
    write_fer(tmp_path / "fer2013.csv", [(i % 7, "Training") for i in range(14)] + [(0, "PublicTest")] * 2)
    source = f"{tmp_path / 'utk'}/+{tmp_path / 'fer2013.csv'}"
    b = load_data(DataConfig(source=source, imgsz=16), [])
    assert [h.name for h in b.heads] == ["age", "gender", "emotion"] and b.kind == "faces"
    n_utk = sum(1 for n in b.train.names if n.endswith(".jpg"))
    assert len(b.train) == n_utk + 14
    t = b.train.targets
    assert np.isnan(t["age"][n_utk:]).all() and (t["gender"][n_utk:] == -1).all()
    assert (t["emotion"][:n_utk] == -1).all() and (t["emotion"][n_utk:] >= 0).all()
    assert b.train.load(len(b.train) - 1).size == (48, 48)  # the last sample comes from the second source
    # the task loss masks the missing labels: a batch from both sources gives a finite loss per head
    tfs = build_transforms(DataConfig(imgsz=16), b.kind, {})
    ds = ImageDataset(b.train, tfs.eval)
    batch = torch.utils.data.default_collate([ds[0], ds[len(ds) - 1]])
    outputs = {"age": torch.zeros(2, 1), "gender": torch.zeros(2, 2), "emotion": torch.zeros(2, 7)}
    total, terms = TaskLoss(b.heads)(outputs, batch["targets"])
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in terms.values())
    # configured heads pick from every source; one no source provides is an error
    b2 = load_data(DataConfig(source=source), [HeadConfig(name="age", kind="regression"), HeadConfig(name="emotion")])
    assert [h.name for h in b2.heads] == ["age", "emotion"]
    with pytest.raises(DataError, match="empty source"):
        load_data(DataConfig(source=f"{tmp_path / 'utk'}+"), [])
