"""The examples in the docstrings run: each built-in loss shows its value on a tiny input (as Keras'
losses.py does), and the number printed there is what the code computes. Where the loss is a Keras
loss the number is Keras' (tests/test_losses.py checks the formulas against Keras itself)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

from cnnbench import losses

LOSS_MODULES = sorted(m.name for m in pkgutil.iter_modules(losses.__path__, losses.__name__ + "."))


@pytest.mark.parametrize("module_name", LOSS_MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    results = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # failures are printed
    assert results.failed == 0, f"{results.failed} of {results.attempted} docstring examples in {module_name} fail"


def test_every_builtin_loss_has_an_example():
    missing = []
    for name in losses.list():
        cls = losses.REGISTRY.entry(name).info.get("loss_class")
        if cls is None or not cls.__module__.startswith(losses.__name__ + "."):
            continue  # registered by a user (or a test), not built in
        examples = doctest.DocTestFinder(recurse=False).find(cls, globs={})
        if not any(test.examples for test in examples):
            missing.append(name)
    assert not missing, f"built-in losses without a '>>>' example in their docstring: {missing}"


def test_the_comparison_protocol_example_runs():
    module = importlib.import_module("cnnbench.analysis.compare")  # the module, not the function it exports
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
