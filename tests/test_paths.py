"""Tests for cnnbench.report.optimizer_paths: trajectories come from cnnbench.optim, pictures are written."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from cnnbench import optim
from cnnbench.errors import UserError
from cnnbench.report import optimizer_paths as paths


def test_surfaces_have_their_minima():
    for s in paths.SURFACES.values():
        for m in s.minima:
            assert s.f(*m) == pytest.approx(0.0, abs=1e-8), s.name
        (x0, x1), (y0, y1) = s.xlim, s.ylim
        assert x0 < s.start[0] < x1 and y0 < s.start[1] < y1


def test_trajectory_is_the_training_optimizer():
    # Keras SGD on Rosenbrock from (-1.2, 1): one step is start - lr * grad.
    x, y = -1.2, 1.0
    grad = np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
    path = paths.trajectory("rosenbrock", "sgd", steps=3, learning_rate=1e-4)
    assert path.shape == (4, 2)
    np.testing.assert_allclose(path[1], np.array([x, y]) - 1e-4 * grad, rtol=1e-12)
    # options of the spec (here a schedule) reach the optimizer
    a = paths.trajectory("beale", {"name": "adam", "schedule": {"name": "constant", "warmup_steps": 5}},
                         steps=3, learning_rate=0.1)
    b = paths.trajectory("beale", "adam", steps=3, learning_rate=0.1)
    assert not np.allclose(a[1], b[1])


def test_default_learning_rates_cover_every_optimizer():
    for surface, table in paths.DEFAULT_LRS.items():
        assert set(table) == set(optim.REGISTRY.list()), surface
    assert set(paths.DEFAULT_LRS) == set(paths.SURFACES)
    assert paths.default_lr("rosenbrock", "Adam") == paths.DEFAULT_LRS["rosenbrock"]["adam"]


def test_tune_lr_picks_a_rate_that_stays_in_the_box():
    lr = paths.tune_lr("himmelblau", "sgd", steps=30, grid=[1e-3, 1e-2, 1.0])
    assert lr == 1e-2  # 1.0 diverges, 1e-2 gets further down than 1e-3


def test_draw_writes_png_and_gif(tmp_path):
    files = paths.draw("himmelblau", ["sgd", {"name": "adam", "flavor": "torch"}], tmp_path, steps=12,
                       learning_rates=[0.01, 0.1], frames=5)
    assert [f.name for f in files] == ["himmelblau.png", "himmelblau.gif"]
    assert Image.open(files[0]).size[0] > 300
    gif = Image.open(files[1])
    assert gif.n_frames >= 5


def test_cli_arguments_and_main(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    paths.add_arguments(parser)
    args = parser.parse_args(["--surface", "saddle", "--optimizers", "sgd,momentum", "--out", str(tmp_path),
                              "--steps", "5", "--lr", "sgd=0.01,momentum=0.01", "--no-gif"])
    assert paths.main(args) == 0
    assert (tmp_path / "saddle.png").exists() and not (tmp_path / "saddle.gif").exists()
    assert "saddle.png" in capsys.readouterr().out


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="did you mean 'beale'"):
        paths.draw("beal", ["sgd"], tmp_path)
    with pytest.raises(UserError, match="learning rates"):
        paths.draw("beale", ["sgd", "adam"], tmp_path, steps=2, learning_rates=[0.1])
    with pytest.raises(UserError, match="--lr"):
        paths._parse_lrs("fast", ["sgd"])
