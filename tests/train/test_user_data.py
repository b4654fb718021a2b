"""Data as users bring it: phone photos with EXIF, Excel CSVs, Jupyter folders, numeric class names,
relative and moved data folders, a face model from the user's own CSV."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgekit.config import DataConfig, HeadConfig, load_config
from edgekit.errors import CheckpointError, DataError
from edgekit.train.data import load_data


def _photo(path, size=(30, 45), value=None):
    """A JPEG whose left half is dark and right half bright (so a rotation is visible)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = 220 if value is None else value
    path.parent.mkdir(parents=True, exist_ok=True)
    return img, path


def test_exif_rotated_phone_photo_is_decoded_upright_on_both_sides(tmp_path):
    from edgekit.runtime.preprocess import read_image
    from edgekit.train.data.labels import decode_rgb

    img, path = _photo(tmp_path / "phone.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": how phones store portrait shots
    Image.fromarray(img).save(path, exif=exif, quality=95)
    assert Image.open(path).size == (30, 45)  # what PIL alone (the old training decode) sees
    runtime = read_image(path)  # OpenCV applies the orientation
    training = np.asarray(decode_rgb(path))
    assert training.shape == runtime.shape == (30, 45, 3)
    assert np.array_equal(training, runtime[:, :, ::-1])  # one decoder: the same pixels, RGB vs BGR
    # and the right way up: stored with its dark half on the left, shown turned 90 degrees clockwise, the dark
    # half is on top (turned the other way, or not at all, it would be at the bottom or on a side)
    assert training[:15].mean() < 30 and training[15:].mean() > 190, (training[:15].mean(), training[15:].mean())
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), np.int16)  # PIL's own reading
    assert np.abs(shown - training).mean() < 2


def _labelled_images(root, n=12):
    for i in range(n):
        Image.fromarray(np.full((10, 10, 3), 20 * (i % 3), np.uint8)).save(root / f"{i}.png")


@pytest.mark.parametrize(("bom", "sep"), [(True, ","), (False, ";"), (True, ";"), (False, "\t")])
def test_csv_from_excel_bom_and_semicolons(tmp_path, bom, sep):
    _labelled_images(tmp_path)
    lines = [sep.join(["path", "mood", "age"])]
    lines += [sep.join([f"{i}.png", ["calm", "happy", "sad"][i % 3], f"{20 + i},5" if sep == ";" else str(20 + i)])
              for i in range(12)]  # European Excel writes decimal commas inside semicolon CSVs
    text = "\n".join(lines) + "\n"
    (tmp_path / "labels.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    heads = [HeadConfig(name="mood"), HeadConfig(name="age", kind="regression")]
    bundle = load_data(DataConfig(source=str(tmp_path / "labels.csv")), heads)
    assert bundle.heads[0].classes == ["calm", "happy", "sad"]
    assert len(bundle.train) + len(bundle.val) == 12
    for split in (bundle.train, bundle.val):  # each image keeps its own row's labels
        for j, name in enumerate(split.names):
            i = int(Path(name).stem)
            assert np.asarray(split.load(j))[0, 0, 0] == 20 * (i % 3)  # the image is the one the row names
            assert split.targets["mood"][j] == i % 3  # calm / happy / sad, by index of the sorted classes
            # European Excel's decimal comma in a semicolon CSV is the number it means: 20,5 is 20.5
            assert split.targets["age"][j] == pytest.approx(20 + i + (0.5 if sep == ";" else 0.0))


def test_jupyter_checkpoints_and_hidden_files_are_not_classes(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            _labelled_images(tmp_path / split / cls, 3)
        (tmp_path / split / ".ipynb_checkpoints").mkdir()
        (tmp_path / split / "cat" / ".ipynb_checkpoints").mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / split / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png")
        (tmp_path / split / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    bundle = load_data(DataConfig(source=str(tmp_path)), [])
    assert bundle.heads[0].classes == ["cat", "dog"]
    assert (len(bundle.train), len(bundle.val)) == (6, 6)


def test_one_class_order_for_folders_and_csv(tmp_path):
    folder = tmp_path / "folder"
    for cls in ("10", "2", "1", "b", "a"):
        (folder / "train" / cls).mkdir(parents=True)
        _labelled_images(folder / "train" / cls, 2)
    assert load_data(DataConfig(source=str(folder), val_fraction=0.5), []).heads[0].classes == \
        ["1", "2", "10", "a", "b"]
    _labelled_images(tmp_path, 10)
    rows = ["path,label"] + [f"{i}.png,{['10', '2', '1', 'b', 'a'][i % 5]}" for i in range(10)]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    assert load_data(DataConfig(source=str(tmp_path / "l.csv"), val_fraction=0.5), []).heads[0].classes == \
        ["1", "2", "10", "a", "b"]


def _folder_dataset(root):
    for split in ("train", "val"):
        for cls, value in (("dark", 30), ("bright", 220)):
            (root / split / cls).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((16, 16, 3), value + i, np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_relative_data_path_is_resolved_and_a_moved_folder_is_named(tmp_path, monkeypatch, capsys):
    from edgekit.cli import main

    _folder_dataset(tmp_path / "work" / "pets")
    monkeypatch.chdir(tmp_path / "work")
    cfg = load_config(overrides={"data.source": "pets"})
    assert cfg.data.source == str((tmp_path / "work" / "pets").resolve())
    assert main(["train", "--data", "pets", "--model", "test_efficientnet", "--imgsz", "16", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), "--name", "rel", "--quiet"]) == 0
    ckpt = tmp_path / "runs" / "train" / "rel" / "best.pt"
    monkeypatch.chdir(tmp_path)  # export from another folder: the run's data is still found
    assert main(["export", str(ckpt), "--target", "onnx", "--out", str(tmp_path / "e1"), "--quiet"]) == 0
    shutil.move(str(tmp_path / "work" / "pets"), str(tmp_path / "moved"))
    assert main(["export", str(ckpt), "--target", "onnx", "--out", str(tmp_path / "e2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pets" in err and "--data" in err and "not found" in err
    assert main(["export", str(ckpt), "--target", "onnx", "--out", str(tmp_path / "e3"), "--data",
                 str(tmp_path / "moved"), "--quiet"]) == 0


def test_a_config_that_cannot_be_read_is_an_error_not_the_digits(trained_run, tmp_path):
    import torch

    from edgekit.train.checkpoint import save_checkpoint
    from edgekit.train.trained import load_trained

    ckpt = torch.load(trained_run.run_dir / "best.pt", map_location="cpu", weights_only=True)
    ckpt["config"]["data"]["imgsz"] = "big"
    path = save_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(CheckpointError, match=r"data.imgsz.*give the data with data"):
        load_trained(path)


def test_a_face_model_from_the_users_own_csv_is_a_face_model(tiny_config, tmp_path, age_mood_csv):
    from edgekit.apps.kiosk import faces_notice
    from edgekit.config import parse_heads
    from edgekit.train.supervised import prepare

    csv = age_mood_csv(tmp_path)
    text = csv.read_text().replace("path,age,mood", "path,age,emotion")
    csv.write_text(text)
    setup = prepare(tiny_config(data__source=str(csv), model__heads=parse_heads("age:regression,emotion"),
                                data__limit=None))
    assert setup.card.provenance["domain"] == "faces" and "face heads" in setup.card.provenance["domain_from"]
    assert faces_notice(setup.card) is None
    plain = prepare(tiny_config(data__source=str(csv), model__heads=parse_heads("emotion"), data__limit=None,
                                data__domain="shelves"))
    assert plain.card.provenance["domain"] == "shelves" and faces_notice(plain.card)
    with pytest.raises(DataError, match="dataset not found"):
        prepare(tiny_config(data__source=str(tmp_path / "nowhere.csv")))
