import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError
from edgekit.train.data import EpochSampler, ImageDataset, build_transforms, load_data


def test_digits_split_is_fixed_and_stratified():
    a = load_data(DataConfig(imgsz=24), [])
    b = load_data(DataConfig(imgsz=24), [])
    assert (len(a.train), len(a.val)) == (1437, 360)
    assert a.train.names == b.train.names and a.val.names == b.val.names
    assert set(a.train.names).isdisjoint(a.val.names)
    counts = np.bincount(a.val.targets["digit"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20 % of each class
    img = a.train.load(0)
    assert img.size == (24, 24) and img.mode == "RGB"
    assert a.heads[0].classes == [str(i) for i in range(10)]


def test_limit_subsamples_deterministically():
    a = load_data(DataConfig(limit=40), [])
    assert (len(a.train), len(a.val)) == (40, 10)
    assert a.train.names == load_data(DataConfig(limit=40), []).train.names


def test_digits_reject_multi_heads():
    with pytest.raises(ConfigError, match="one classification head"):
        load_data(DataConfig(), [HeadConfig(name="age", kind="regression")])


def _png(path, value=128, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _tree(root, classes=("cat", "dog"), n=4, val=True):
    for c in classes:
        for i in range(n):
            _png(root / "train" / c / f"{i}.png", value=40 * i)
            if val:
                _png(root / "val" / c / f"{i}.png", value=40 * i + 5)
    return root


def test_image_folder(tmp_path):
    bundle = load_data(DataConfig(source=str(_tree(tmp_path))), [])
    assert bundle.heads[0].classes == ["cat", "dog"] and bundle.heads[0].name == "class"
    assert (len(bundle.train), len(bundle.val)) == (8, 8)
    assert list(bundle.train.targets["class"]) == [0] * 4 + [1] * 4


def test_image_folder_without_val_is_split(tmp_path):
    bundle = load_data(DataConfig(source=str(_tree(tmp_path, n=5, val=False)), val_fraction=0.2), [])
    assert (len(bundle.train), len(bundle.val)) == (8, 2)
    assert sorted(bundle.val.targets["class"]) == [0, 1]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        load_data(DataConfig(source=str(tmp_path / "nope")), [])
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="train does not exist"):
        load_data(DataConfig(source=str(tmp_path / "x")), [])
    root = _tree(tmp_path / "y")
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty has no images"):
        load_data(DataConfig(source=str(root)), [])


def test_truncated_image_is_named_or_skipped(tmp_path):
    root = _tree(tmp_path)
    bad = root / "train" / "cat" / "bad.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:300])  # truncated JPEG
    (root / "train" / "dog" / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*(bad\.jpg|text\.png).*skip_bad=True"):
        load_data(DataConfig(source=str(root)), [])
    bundle = load_data(DataConfig(source=str(root), skip_bad=True), [])
    assert len(bundle.skipped) == 2 and len(bundle.train) == 8


def _csv(tmp_path, rows, name="labels.csv"):
    for r in rows[1:]:
        _png(tmp_path / r[0], value=7)
    path = tmp_path / name
    path.write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_multitask_csv(tmp_path):
    rows = [["path", "age", "gender", "emotion", "tags"]]
    for i in range(20):
        rows.append([f"img/{i}.png", "" if i == 3 else 20 + i, "fm"[i % 2], ["happy", "sad", "neutral"][i % 3],
                     "a|b" if i % 4 == 0 else "c"])
    path = _csv(tmp_path, rows)
    heads = [HeadConfig(name="age", kind="regression"), HeadConfig(name="gender"),
             HeadConfig(name="emotion"), HeadConfig(name="tags", kind="multilabel")]
    bundle = load_data(DataConfig(source=str(path), val_fraction=0.25), heads)
    specs = {h.name: h for h in bundle.heads}
    assert specs["gender"].classes == ["f", "m"] and specs["emotion"].classes == ["happy", "neutral", "sad"]
    assert specs["tags"].classes == ["a", "b", "c"] and specs["age"].outputs == 1
    assert (len(bundle.train), len(bundle.val)) == (15, 5)
    all_age = np.concatenate([bundle.train.targets["age"], bundle.val.targets["age"]])
    assert np.isnan(all_age).sum() == 1  # the empty cell is a missing label, not 0
    tags = np.concatenate([bundle.train.targets["tags"], bundle.val.targets["tags"]])
    assert tags.shape == (20, 3) and tags.sum() == 5 * 2 + 15


def test_csv_errors(tmp_path):
    path = _csv(tmp_path, [["path", "a", "b"], ["x.png", 1, 2]])
    with pytest.raises(ConfigError, match="heads='name:kind,...'"):
        load_data(DataConfig(source=str(path)), [])
    with pytest.raises(DataError, match="no column 'c'"):
        load_data(DataConfig(source=str(path)), [HeadConfig(name="c")])
    nopath = tmp_path / "nopath.csv"
    nopath.write_text("file,label\nx.png,1\n")
    with pytest.raises(DataError, match="'path' column"):
        load_data(DataConfig(source=str(nopath)), [])
    rows = [["path", "age"]] + [[f"{i}.png", "old" if i == 2 else i] for i in range(6)]
    with pytest.raises(DataError, match="'old' in column 'age' is not a number"):
        load_data(DataConfig(source=str(_csv(tmp_path, rows, "r.csv"))), [HeadConfig(name="age", kind="regression")])
    rows = [["path", "y"]] + [[f"{i}.png", "ab"[i % 2]] for i in range(8)]
    val = _csv(tmp_path, [["path", "y"], ["v.png", "zebra"]], "val.csv")
    with pytest.raises(DataError, match="'zebra' .* not seen in training"):
        load_data(DataConfig(source=str(_csv(tmp_path, rows, "t.csv")), val=str(val)), [])
    missing = tmp_path / "m.csv"
    missing.write_text("path,y\n" + "ghost.png,a\nghost2.png,b\n" * 3)
    with pytest.raises(DataError, match="ghost.*file not found"):
        load_data(DataConfig(source=str(missing)), [])


def test_same_key_same_augmented_view():
    cfg = DataConfig(imgsz=16, limit=20)
    bundle = load_data(cfg, [])
    tfs = build_transforms(cfg, bundle.kind, {})
    ds = ImageDataset(bundle.train, tfs.train)
    a, b, c = ds[(3, 0, 11)], ds[(3, 0, 11)], ds[(3, 0, 12)]
    assert torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])  # another seed, another crop
    assert a["image"].shape == (3, 16, 16) and a["targets"]["digit"].dtype == torch.int64


def test_sampler_is_reproducible_and_shards_cover_the_epoch():
    s = EpochSampler(10, seed=1)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(2)
    assert list(s) == first
    s.set_epoch(3)
    assert list(s) != first
    shards = []
    for rank in range(2):
        r = EpochSampler(11, seed=1, rank=rank, world=2)
        r.set_epoch(0)
        shards.append([k[0] for k in r])
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0]) | set(shards[1]) == set(range(11))
    v = EpochSampler(10, seed=1, views=3)
    v.set_epoch(0)
    assert all(0 <= view < 3 for _, view, _ in v)
