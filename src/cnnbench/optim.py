"""Optimizers by name (first version: Keras 3 default hyperparameters mapped onto torch.optim).

    opt = get("adam", model.parameters(), learning_rate=1e-3)
    resolve("adam")  # {"name": "adam", "flavor": "keras", "learning_rate": 0.001, ...}

The full version (Keras update rules, schedules, clipping, LARS/LAMB, ...) follows; the public
functions below are the contract the engine codes against (docs/CONTRACTS.md).
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import UserError
from .registry import Registry, split_spec

REGISTRY = Registry("optimizer")

_TORCH_NAMES = {"lr": "learning_rate", "eps": "epsilon"}


def _canon(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in options.items():
        if k == "betas":
            out["beta_1"], out["beta_2"] = float(v[0]), float(v[1])
        else:
            out[_TORCH_NAMES.get(k, k)] = v
    return out


def _register(name, cls, defaults, to_torch, summary, aliases=()):
    def factory(params=None, **options):
        return cls(params, **to_torch({**defaults, **options}))

    def resolve(**options):
        return {"flavor": "keras", **defaults, **options}

    factory.__signature__ = None  # noqa: placeholder, replaced below
    import inspect

    sig = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    sig += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    sig += [inspect.Parameter("flavor", inspect.Parameter.KEYWORD_ONLY, default="keras")]
    factory.__signature__ = inspect.Signature(sig)
    REGISTRY.register(name, aliases=aliases, summary=summary, resolve=resolve)(factory)


def _sgd_args(momentum_default):
    def to_torch(o):
        return dict(lr=o["learning_rate"], momentum=o["momentum"], nesterov=o["nesterov"],
                    weight_decay=o["weight_decay"] or 0.0)
    return to_torch


_register("sgd", torch.optim.SGD, dict(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None),
          _sgd_args(0.0), "Stochastic gradient descent (Robbins & Monro 1951).")
_register("momentum", torch.optim.SGD, dict(learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=None),
          _sgd_args(0.9), "SGD with heavy-ball momentum 0.9 (Polyak 1964).")
_register("nesterov", torch.optim.SGD, dict(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=None),
          _sgd_args(0.9), "SGD with Nesterov momentum (Nesterov 1983; Sutskever et al. 2013).", aliases=["nag"])
_register("rmsprop", torch.optim.RMSprop,
          dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None),
          lambda o: dict(lr=o["learning_rate"], alpha=o["rho"], momentum=o["momentum"], eps=o["epsilon"],
                         centered=o["centered"], weight_decay=o["weight_decay"] or 0.0),
          "RMSprop (Tieleman & Hinton 2012, Lecture 6.5).")
_ADAM = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None)
_register("adam", torch.optim.Adam, {**_ADAM, "amsgrad": False},
          lambda o: dict(lr=o["learning_rate"], betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                         amsgrad=o["amsgrad"], weight_decay=o["weight_decay"] or 0.0),
          "Adam (Kingma & Ba 2015).")
_register("adagrad", torch.optim.Adagrad,
          dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None),
          lambda o: dict(lr=o["learning_rate"], initial_accumulator_value=o["initial_accumulator_value"],
                         eps=o["epsilon"], weight_decay=o["weight_decay"] or 0.0),
          "Adagrad (Duchi, Hazan & Singer 2011).")
_register("adadelta", torch.optim.Adadelta, dict(learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None),
          lambda o: dict(lr=o["learning_rate"], rho=o["rho"], eps=o["epsilon"], weight_decay=o["weight_decay"] or 0.0),
          "Adadelta (Zeiler 2012).")
_register("adamax", torch.optim.Adamax, dict(_ADAM),
          lambda o: dict(lr=o["learning_rate"], betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                         weight_decay=o["weight_decay"] or 0.0),
          "Adamax (Kingma & Ba 2015, section 7).")
_register("nadam", torch.optim.NAdam, dict(_ADAM),
          lambda o: dict(lr=o["learning_rate"], betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                         weight_decay=o["weight_decay"] or 0.0),
          "Nadam (Dozat 2016).")


def _split(spec, hyper):
    name, options = split_spec(spec) if not isinstance(spec, str) else (spec, {})
    options = _canon({**options, **hyper})
    options.pop("batch_size", None)
    return name, options


def get(spec, params, *, steps_per_epoch=None, epochs=None, **hyper) -> torch.optim.Optimizer:
    """Build the optimizer named by `spec` over `params`."""
    name, options = _split(spec, hyper)
    flavor = options.get("flavor", "keras")
    if flavor not in ("keras", "torch"):
        raise UserError(f"optimizer flavor must be 'keras' or 'torch', got {flavor!r}")
    options.pop("flavor", None)
    return REGISTRY.get(name, params=list(params), **options)


def resolve(spec) -> dict[str, Any]:
    name, options = _split(spec, {})
    return REGISTRY.resolve(name, **options)


def on_epoch_end(optimizer, epoch, logs=None) -> None:
    """Per-epoch schedules (none yet)."""


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def state_dict(optimizer) -> dict:
    return {"optimizer": optimizer.state_dict()}


def load_state_dict(optimizer, state) -> None:
    optimizer.load_state_dict(state["optimizer"])
