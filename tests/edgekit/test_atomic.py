import json

import pytest

from edgekit.atomic import atomic_open, write_json


def test_write_json_and_no_temp_left(tmp_path):
    path = write_json(tmp_path / "sub" / "a.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write('{"v": 2')
        raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
