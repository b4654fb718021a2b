"""`pip install edgekit[runtime]` in a fresh venv (no torch) loads and runs the exported files."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FILES = ("model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite")
SCRIPT = f"FILES = {FILES!r}\n" + """
import importlib.util, json, sys
assert importlib.util.find_spec("torch") is None, "torch must not be installed by edgekit[runtime]"
from edgekit.runtime import load
out = {}
for name in FILES:
    model = load(sys.argv[1] + "/" + name, threads=1)
    out[name] = model.run(model.preprocess(sys.argv[2:]))["digit"].tolist()
print(json.dumps(out))
"""


SKIP = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache",
                              ".ruff_cache", "tests", "node_modules", ".venv*", "venv*", "*.venv")


def not_source(folder: str, names: list[str]) -> set[str]:
    """What a copy of the checkout leaves out: build outputs, caches, tests, and any virtual environment
    (a folder holding pyvenv.cfg, whatever its name: one inside the checkout was 7.4 GB)."""
    from pathlib import Path

    return set(SKIP(folder, names)) | {n for n in names if (Path(folder) / n / "pyvenv.cfg").is_file()}


def test_copy_of_the_checkout_skips_virtual_environments(tmp_path):
    (tmp_path / "repo" / "myenv").mkdir(parents=True)
    (tmp_path / "repo" / "myenv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "repo" / ".venv-gpu" / "lib").mkdir(parents=True)
    (tmp_path / "repo" / "train").mkdir()
    (tmp_path / "repo" / "train" / "a.py").write_text("")
    shutil.copytree(tmp_path / "repo", tmp_path / "copy", ignore=not_source)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["train"]


def test_runtime_extra_in_a_fresh_venv(exported, val_pngs, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    src = tmp_path / "src"  # install from a copy: pip builds in-tree and would leave build/ in the checkout
    shutil.copytree(ROOT, src, ignore=not_source)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{src}[runtime]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    images = [str(p) for p in sorted(val_pngs.iterdir())[:8]]
    image = images[0]
    # cwd outside the repository: `python -c` puts the cwd first on sys.path, and the repo's
    # edgekit/ folder alone is not the installed package
    run = subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, str(exported.out_dir), *images],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    import numpy as np

    from edgekit.export.gates import gate_for, judge
    from edgekit.export.verify import compare_outputs
    from edgekit.runtime import load

    got = json.loads(run.stdout.strip().splitlines()[-1])
    for name in FILES:  # the fresh venv's runtime gives the answers the files were certified with here
        here = load(exported.out_dir / name, threads=1)
        want = here.run(here.preprocess(images))["digit"]
        stats = compare_outputs(here.card, {"digit": want}, {"digit": np.asarray(got[name], np.float32)})
        precision = here.card.provenance["precision"]
        assert judge({"heads": stats}, gate_for(precision))["passed"], (name, stats)
        assert (np.asarray(got[name]).argmax(1) == want.argmax(1)).all(), name
    cli = subprocess.run([str(venv / "bin" / "edgekit"), "predict", str(exported.out_dir / "model.tflite"), image],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert cli.returncode == 0 and cli.stdout.startswith(image), cli.stderr[-2000:]
    # what `edgekit check FILE --parity --on DEVICE` runs on the device: the gates on validation samples built
    # here (CI failed on the emulated ARM: verifying a file imported its exporter, and with it torch)
    from edgekit.recipes.samples import build_samples

    for name in ("model.int8.onnx", "model.tflite"):
        pack, why = build_samples(exported.out_dir / name, tmp_path / f"{name}.samples.npz", 16)
        assert pack is not None, why
        check = subprocess.run([str(venv / "bin" / "edgekit"), "check", str(exported.out_dir / name), "--parity",
                                "--samples", str(pack), "--json"], capture_output=True, text=True, timeout=300,
                               cwd=tmp_path)
        assert check.returncode == 0, check.stderr[-2000:]
        gates = json.loads(check.stdout.strip().splitlines()[-1])["gates"]
        assert len(gates) >= 2 and all(g["passed"] for g in gates), gates  # golden inputs and the samples
