"""Declared options (issue 12): one declaration per option gives the validation at the boundary, the
one-line errors, `cnnbench list KIND NAME` and docs/options.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest

from cnnbench import losses, models, optim
from cnnbench.cli import main, reference
from cnnbench.errors import UserError
from cnnbench.registry import Option, Registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_docs_options_page_is_what_the_declarations_print():
    assert DOCS.read_text(encoding="utf-8") == reference.document(), (
        "docs/options.md is out of date: python -m cnnbench.cli.reference > docs/options.md")


@pytest.mark.parametrize("kind", reference.KINDS)
def test_every_built_in_option_declares_a_type_and_a_line_of_doc(kind):
    for entry in reference.registry(kind):
        for declared in entry.options.values():
            assert declared.type is not Any and declared.option.doc, (kind, entry.name, declared.name)


def test_every_augmentation_option_declares_a_type_and_a_line_of_doc():
    from cnnbench.data.augment import DEFAULTS, OPTIONS

    assert set(OPTIONS) == set(DEFAULTS) and all(OPTIONS[k].__metadata__[0].doc for k in OPTIONS)


def _registry_with(factory) -> Registry:
    reg = Registry("thing")
    reg.register("thing")(factory)
    return reg


def test_declared_types_are_strict_where_a_study_file_could_be_wrong():
    def thing(*, rate: Annotated[float, Option("a rate", ge=0, lt=1)] = 0.5,
              sizes: Annotated[int | Sequence[int], Option("sizes", ge=1)] = (1, 2),
              flag: bool = False, count: Annotated[int | None, Option("n", ge=2)] = None):
        return rate, sizes, flag, count

    reg = _registry_with(thing)
    assert reg.get("thing", rate=0, sizes=[3], flag=True, count=2) == (0, [3], True, 2)  # an int is a number
    assert reg.get("thing", sizes=4) == (0.5, 4, False, None)
    refused = {
        "rate": ("0.1", True, 1, float("nan")),   # a string, a bool, out of [0, 1), not finite
        "sizes": ([1, 0], [1.5], "12", [True]),  # every element within the limits and whole
        "flag": (2, "yes"),                     # 0 and 1 are taken, as they were before declarations
        "count": (1, 2.5),                      # 2.0 is taken for 2, as before
    }
    for key, values in refused.items():
        for value in values:
            with pytest.raises(UserError, match=rf"^thing 'thing' option '{key}' must be .*, got "):
                reg.get("thing", **{key: value})


def test_an_unannotated_option_is_typed_by_its_default_leniently():
    def thing(*, scale=1, name="x", on=True):
        return scale, name, on

    reg = _registry_with(thing)
    assert reg.get("thing", scale=0.5) == (0.5, "x", True)  # `scale=1` still takes 0.5
    assert reg.get("thing", scale=None, name=None, on=None) == (None, None, None)  # None: as the user's code takes it
    with pytest.raises(UserError, match=r"option 'scale' must be a number \(or absent\), got 'big'"):
        reg.get("thing", scale="big")
    with pytest.raises(UserError, match=r"option 'on' must be true or false \(or absent\), got 'yes'"):
        reg.get("thing", on="yes")


def test_a_user_loss_keeps_its_own_meaning_of_a_shared_option_name():
    """The Keras losses' whole-number `axis` is not imposed on a user's `axis=None` (found in review)."""
    def spread(y_true, y_pred, axis=None, widths=(8, 16)):
        return (y_true - y_pred).abs().mean(-1)

    reg = Registry("loss", shared=losses.REGISTRY.shared)
    reg.register("spread")(losses.registration.function_factory(spread, "spread"))
    assert reg.resolve("spread", axis=[1, 2], widths=8)["axis"] == [1, 2]
    assert reg.resolve("spread")["axis"] is None


def test_values_that_ran_before_declared_options_still_resolve_to_the_same_config():
    """Study files that ran keep their run keys and resume (found in review): numpy numbers, whole floats
    for whole numbers, 0/1 for flags, None where Keras takes it, a pathlib.Path."""
    import numpy as np

    from cnnbench import data

    assert losses.resolve({"name": "cubed_hinge", "power": 3.0})["power"] == 3.0
    assert losses.resolve({"name": "cce", "from_logits": 1})["from_logits"] == 1
    assert models.resolve({"name": "resnet_cifar", "version": 1.0})["version"] == 1.0
    assert models.resolve({"name": "vgg16", "weights": None})["weights"] == "none"
    assert models.resolve({"name": "keras_mnist_mlp", "activation": None})["activation"] is None
    assert data.resolve({"name": "digits", "seed": np.int64(1)})["seed"] == 1


@pytest.mark.parametrize("spec", [{"name": "digits_cnn", "hidden_units": 128.0},
                                  {"name": "keras_mnist_cnn", "filters": [32.0, 64]},
                                  {"name": "resnet_cifar", "depth": 20.0}])
def test_a_layer_size_given_as_a_float_is_refused_when_read_as_the_model_would_when_built(spec):
    """strict options: the old code refused these when each run built its model (every run failed)."""
    with pytest.raises(UserError, match="must be a whole number"):
        models.resolve(spec)


@pytest.mark.parametrize("resolve, spec, message", [
    (losses.resolve, {"name": "cce", "label_smoothing": "high"},
     "loss 'categorical_crossentropy' option 'label_smoothing' must be a number in [0, 1], got 'high'"),
    (losses.resolve, {"name": "focal_loss", "gamma": -1}, "option 'gamma' must be a number >= 0, got -1"),
    (losses.resolve, {"name": "cce", "reduction": "avg"}, "option 'reduction' must be one of 'sum_over_batch_size'"),
    (models.resolve, {"name": "keras_mnist_cnn", "dropout": [0.25, 2]},
     "model 'keras_mnist_cnn' option 'dropout' must be a number or a list of numbers in [0, 1), got [0.25, 2]"),
    (models.resolve, {"name": "lenet5", "pooling": "min"}, "option 'pooling' must be 'avg' or 'max', got 'min'"),
    (optim.resolve, {"name": "adam", "beta_1": 2}, "optimizer 'adam' option 'beta_1' must be a number in [0, 1)"),
    (optim.resolve, {"name": "sgd", "momentum": -0.1}, "option 'momentum' must be a number in [0, 1], got -0.1"),
])
def test_resolve_refuses_bad_values_before_anything_is_built(resolve, spec, message):
    with pytest.raises(UserError) as info:
        resolve(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_study_with_a_bad_option_value_is_refused_when_read_and_nothing_is_written(tmp_path, capsys):
    # before declared options, this study started, and its run failed inside the worker
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nepochs = 1\nseeds = [0]\n'
                    'loss = { name = "categorical_crossentropy", label_smoothing = "high" }\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "option 'label_smoothing' must be a number in [0, 1], got 'high'" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_list_one_entry_shows_its_declared_options(capsys):
    assert main(["list", "losses", "focal_loss"]) == 0
    shown = capsys.readouterr().out
    for text in ("categorical_focal_crossentropy", "gamma", "a number >= 0", "the focusing exponent", "2.0"):
        assert text in shown
    assert main(["list", "optimizers", "--options", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == reference.markdown("optimizers").strip()
    assert main(["list", "studies", "default"]) == 2
    assert "studies have no options" in capsys.readouterr().err
