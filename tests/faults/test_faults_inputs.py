"""A stranger's model file runs no code; bad data is one line, exit 2, nothing written."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch


def _hostile_model_file(tmp_path):
    """A model file whose config names a model in a module that leaves a marker when imported."""
    marker = tmp_path / "code_ran"
    code = tmp_path / "code"
    code.mkdir()
    (code / "stranger_mod.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def build(input_shape, num_outputs):\n"
        "    c, h, w = input_shape\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, num_outputs))\n")
    config = {"model": {"name": "stranger_mod:build"}, "input_shape": [1, 8, 8], "num_outputs": 10,
              "dataset": {"name": "digits"}, "class_names": [str(i) for i in range(10)]}
    state = {"1.weight": torch.zeros(10, 64), "1.bias": torch.zeros(10)}
    path = tmp_path / "stranger.pt"
    torch.save({"format": "cnnbench-model", "version": 1, "config": json.dumps(config), "state_dict": state}, path)
    return path, marker, code


def test_evaluate_refuses_a_file_that_names_code_unless_trusted(fault, tmp_path):
    path, marker, code = _hostile_model_file(tmp_path)
    env = {"PYTHONPATH": str(code)}
    c = fault.start("evaluate", path, "--data-dir", tmp_path, "--device", "cpu", env=env)
    status, _ = c.wait()
    assert status == 2
    lines = c.stderr.strip().splitlines()
    assert len(lines) == 1 and "'stranger_mod:build'" in lines[0] and "--trust-code" in lines[0], c.stderr
    assert not marker.exists()  # nothing was imported
    trusted = fault.start("evaluate", path, "--data-dir", tmp_path, "--device", "cpu", "--trust-code", env=env)
    status, _ = trusted.wait(timeout=120)
    assert status == 0, trusted.stderr
    assert marker.exists() and "test accuracy" in trusted.stdout


# --- bad data: one line, exit 2, the store and the data directory untouched -------------------------
def _npz(path, y_train, y_test, n_train=None, n_test=None):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (len(y_train) if n_train is None else n_train, 8, 8), dtype=np.uint8)
    xt = rng.integers(0, 256, (len(y_test) if n_test is None else n_test, 8, 8), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.asarray(y_train, np.int64), x_test=xt, y_test=np.asarray(y_test, np.int64))


def _huge_header(path):
    _npz(path, [0, 1] * 8, [0, 1])
    raw = io.BytesIO(path.read_bytes())
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename == "x_train.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                                           "shape": (10**13, 8, 8)})
                dst.writestr(info.filename, buf.getvalue() + bytes(64))
            else:
                dst.writestr(info, src.read(info))


def _one_class_folder(path):
    from PIL import Image

    for part in ("train", "test"):
        (path / part / "cats").mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), i * 40).save(path / part / "cats" / f"{i}.png")


BAD_DATA = {
    "stray_label": (lambda p: _npz(p / "bad.npz", [0, 1, 1000000, 1] * 4, [0, 1]), '"bad.npz"',
                    "include 1000000"),
    "no_images": (lambda p: _npz(p / "bad.npz", np.zeros(0), [0, 1], n_train=0), '"bad.npz"', "x_train holds 0 images"),
    "header_claims_1e13_images": (lambda p: _huge_header(p / "bad.npz"), '"bad.npz"', "claims shape (10000000000000"),
    "one_class_folder": (lambda p: _one_class_folder(p / "pets"), '"imagefolder:pets"', "pets: one class folder"),
}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A study directory holding one finished run: the store the bad inputs must leave untouched."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("store")
    spec = root / "study.toml"
    spec.write_text('name = "faults"\nseeds = [0]\nepochs = 1\ndataset = "digits"\nmodel = "digits_cnn"\n')
    r = subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", str(spec), "-o", str(root / "out"),
                        "--data-dir", str(root), "--workers", "1", "-q", "--no-report"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return root / "out"


@pytest.mark.slow  # two subprocesses each, ~10 s
@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_line_and_exit_2_with_the_store_untouched(fault, tmp_path, finished_study, case):
    make, dataset, message = BAD_DATA[case]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make(data_dir)
    spec = fault.write_study(tmp_path / "study.toml", seeds=1, epochs=1, batch_size=4,
                             dataset=f'{{ name = {dataset} }}')
    store_before, data_before = fault.tree_hash(finished_study), fault.tree_hash(data_dir)
    for extra in ([], ["--dry-run"]):
        c = fault.start("run", spec, "-o", finished_study, "--data-dir", data_dir, "-q", "--no-report", *extra)
        status, _ = c.wait(timeout=120)
        lines = c.stderr.strip().splitlines()
        assert status == 2 and len(lines) == 1 and message in lines[0], (status, c.stderr)
        assert fault.tree_hash(finished_study) == store_before
        assert fault.tree_hash(data_dir) == data_before


def test_dry_run_writes_nothing_into_the_data_directory(fault, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    spec = fault.write_study(tmp_path / "study.toml", seeds=1, epochs=1)
    c = fault.start("run", spec, "-o", tmp_path / "out", "--data-dir", data_dir, "--dry-run", "-q")
    status, _ = c.wait(timeout=120)
    assert status == 0, c.stderr
    assert list(data_dir.iterdir()) == []  # no dataset cache
    assert not (tmp_path / "out").exists()
