"""The photo ImageFolder the coverage matrix's stand-ins are calibrated, probed and verified on."""

import pytest

from edgekit.recipes.photos import PHOTOS, photo_folder


def test_photo_folder_is_a_deterministic_image_folder(tmp_path):
    pytest.importorskip("skimage")
    from edgekit.config import DataConfig
    from edgekit.train.data import load_data

    root = photo_folder(tmp_path / "photos", train_per_class=2, val_per_class=1, size=48)
    assert not (tmp_path / "photos.partial").exists()  # written aside, then renamed whole
    classes = sorted(p.name for p in (root / "train").iterdir())
    assert len(classes) == len(PHOTOS) and "astronaut" in classes and "hubble_deep_field" in classes
    first = (root / "train" / "astronaut" / "000.jpg").read_bytes()
    stamp = (root / ".complete").stat().st_mtime_ns
    assert photo_folder(root, train_per_class=2, val_per_class=1, size=48) == root  # complete: reused as is
    assert (root / ".complete").stat().st_mtime_ns == stamp
    again = photo_folder(tmp_path / "again", train_per_class=2, val_per_class=1, size=48)
    assert (again / "train" / "astronaut" / "000.jpg").read_bytes() == first  # same seed, same crops

    bundle = load_data(DataConfig(source=str(root), imgsz=32), [])
    assert bundle.heads[0].name == "class" and bundle.heads[0].classes == classes
    assert (len(bundle.train), len(bundle.val)) == (2 * len(PHOTOS), len(PHOTOS))

    photo_folder(root, train_per_class=3, val_per_class=1, size=48)  # other settings: written again
    assert len(list((root / "train" / "coins").iterdir())) == 3
