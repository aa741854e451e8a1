"""Optimizers by name, with Keras 3 semantics by default, schedules and clipping run in step hooks.

    opt = optim.get({"name": "adam", "schedule": {"name": "cosine", "warmup_epochs": 2}},
                    model.parameters(), steps_per_epoch=len(loader), epochs=10)
    ...
    loss.backward(); opt.step()                # clipping + per-step schedule run in hooks
    optim.on_epoch_end(opt, epoch, logs)       # per-epoch schedules, reduce-on-plateau
    optim.current_lr(opt)                      # logged every epoch
    torch.save(optim.state_dict(opt), path)    # loads with torch.load(weights_only=True)

    optim.resolve("adam")
    # {"name": "adam", "flavor": "keras", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
    #  "epsilon": 1e-07, "amsgrad": False, "weight_decay": 0.0, "schedule": {"name": "constant", ...},
    #  "clipvalue": None, "clipnorm": None, "global_clipnorm": None, "scale_lr_with_batch": None}

Hyperparameters use Keras' names; torch's (`lr`, `betas`, `eps`, `alpha` for RMSprop) are accepted
too. `flavor="keras"` (the default where Keras has the optimizer) reproduces Keras 3's defaults and
update rules; `flavor="torch"` is torch.optim's class and defaults (pytorch-optimizer's where
torch.optim lacks it). `flavor="tf1"` is the tf.compat.v1.train optimizer's defaults and update rule
(sgd, momentum, nesterov, rmsprop, adam, adagrad, adadelta; a `learning_rate` TF 1.x requires stays
None in `resolve` and must be given before `get`). Keras' `weight_decay=None` is `0.0` here. See
docs/optimizers.md.

Options every optimizer takes besides its hyperparameters:
- `flavor`: "keras" | "torch" | "tf1".
- `schedule`: a schedule name or table (see `cnnbench.optim.schedules`).
- `clipvalue`, `clipnorm`, `global_clipnorm`: Keras' gradient clipping (at most one).
- `scale_lr_with_batch = B`: learning rate x batch_size / B (Goyal et al. 2017), or x sqrt(batch_size / B)
  with `scale_lr_rule = "sqrt"` (Krizhevsky 2014; the LAMB paper); the engine passes `batch_size=` to `get`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Literal

import torch

from ..errors import UserError, did_you_mean
from ..registry import Declared, Registry, normalize, split_spec
from .catalog import SPECS, Spec
from .options import COMMON, HYPERPARAMETERS
from .schedules import CLIP_OPTIONS, Controller, Schedule, resolve_schedule

__all__ = ["REGISTRY", "get", "resolve", "on_epoch_end", "current_lr", "state_dict", "load_state_dict",
           "train_mode", "eval_mode", "NEEDS", "FLAVORS", "missing_required",
           "check_required", "option_names"]

#: Every flavour some optimizer has, in the order `cnnbench list optimizers` shows them.
FLAVORS = ("keras", "torch", "tf1")

REGISTRY = Registry("optimizer", context=("params",))

#: What `get` needs from the engine besides params: `batch_size` (for `scale_lr_with_batch`),
#: `steps_per_epoch` and `epochs` (for schedules).
NEEDS = ("batch_size", "steps_per_epoch", "epochs")

COMMON_DEFAULTS: dict[str, Any] = {"clipvalue": None, "clipnorm": None, "global_clipnorm": None,
                                   "scale_lr_with_batch": None, "scale_lr_rule": "linear"}
_GENERIC_ALIASES = {"lr": "learning_rate", "eps": "epsilon", "beta1": "beta_1", "beta2": "beta_2",
                    "clip_value": "clipvalue", "clip_norm": "clipnorm", "global_clip_norm": "global_clipnorm"}
_RUNTIME = ("batch_size",)


def _coerce(where: str, key: str, value, default):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where} option {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} option {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where} option {key!r} must be a finite number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} option {key!r} must be an integer, got {value!r}")
        return value
    return value


def _canonical_options(spec: Spec, options: dict[str, Any]) -> dict[str, Any]:
    """Torch names -> Keras names; `betas` -> beta_1/beta_2; refuses a value given twice."""
    aliases = {**_GENERIC_ALIASES, **spec.hyper_aliases}
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}

    def put(key, value, original):
        if key in out:
            raise UserError(f"optimizer {spec.name!r}: {original!r} and {given_as[key]!r} set the same "
                            "hyperparameter; give only one")
        out[key] = value
        given_as[key] = original

    for key, value in options.items():
        if key == "betas":
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise UserError(f"optimizer {spec.name!r}: betas must be a pair [beta_1, beta_2], got {value!r}")
            put("beta_1", value[0], "betas")
            put("beta_2", value[1], "betas")
        else:
            put(aliases.get(key, key), value, key)
    return out


def _resolve(spec: Spec, options: dict[str, Any]) -> dict[str, Any]:
    options = _canonical_options(spec, options)
    flavor = options.pop("flavor", None) or spec.default_flavor
    if not isinstance(flavor, str) or flavor.lower() not in spec.flavors:
        other = "" if flavor not in FLAVORS else f" ({spec.name} has no {flavor} implementation)"
        raise UserError(f"optimizer {spec.name!r} flavor must be one of {', '.join(map(repr, spec.flavors))}, "
                        f"got {flavor!r}{other}")
    flavor = flavor.lower()
    defaults = spec.flavors[flavor].defaults
    schedule = resolve_schedule(options.pop("schedule", None))
    allowed = {**defaults, **COMMON_DEFAULTS}
    where = f"optimizer {spec.name!r}"
    out: dict[str, Any] = {"flavor": flavor, **defaults, **COMMON_DEFAULTS}
    for key, value in options.items():
        if key not in allowed:
            elsewhere = [f for f, fl in spec.flavors.items() if key in fl.defaults]
            if elsewhere:
                raise UserError(f"{where} option {key!r} exists only with flavor={elsewhere[0]!r}; "
                                f"add flavor = {elsewhere[0]!r} or drop it")
            names = sorted(set(allowed) | {"schedule", "flavor"})
            hint = did_you_mean(key, names + sorted(_GENERIC_ALIASES))
            raise UserError(f"{where} has no option {key!r}; {hint}allowed: {', '.join(names)}")
        if key == "weight_decay" and value is None:
            value = 0.0  # Keras' None
        if value is not None:
            value = _coerce(where, key, value, allowed[key] if allowed[key] is not None else 0.0)
            declared = HYPERPARAMETERS.get(key, COMMON.get(key))
            if declared is not None:  # its type and limits, as declared once (options.py)
                Declared.of(key, declared).check(value, where)
        out[key] = value
    REGISTRY.check_rules(where, out)
    scale = out["scale_lr_with_batch"]
    if scale is not None:  # 256.0 and 256 are one configuration
        out["scale_lr_with_batch"] = int(scale) if float(scale).is_integer() else float(scale)
    out["schedule"] = schedule
    return out


@REGISTRY.rule
def _one_clipping(options: dict[str, Any]) -> str | None:
    """Keras' optimizers take at most one of clipvalue, clipnorm and global_clipnorm."""
    clips = [k for k in CLIP_OPTIONS if options.get(k) is not None]
    if len(clips) > 1:
        return f"set only one of clipvalue, clipnorm, global_clipnorm (got {', '.join(clips)})"
    return None


def missing_required(config: dict[str, Any]) -> list[str]:
    """The hyperparameters of a resolved optimizer config that its flavour requires and that are
    unset (None): e.g. `["learning_rate"]` for `{"name": "sgd", "flavor": "tf1"}`. A study without a
    learning-rate search can refuse such a config when it loads."""
    return [k for k, v in config.items() if v is None and k not in COMMON_DEFAULTS and k != "schedule"]


def option_names() -> set[str]:
    """Every hyperparameter or option some optimizer takes (a study that wrote `learning_rate` as a run
    key is told to write it in the optimizer's table)."""
    names = {"learning_rate", "lr", "schedule", "betas", *COMMON_DEFAULTS}
    for spec in SPECS.values():
        for flavor in spec.flavors.values():
            names.update(flavor.defaults)
    return names


def check_required(name: str, config: dict[str, Any]) -> None:
    """A `UserError` naming the hyperparameters the flavour of `config` requires and lacks."""
    missing = missing_required(config)
    if missing:
        cls = SPECS[name].flavors[config["flavor"]].implementation.split(" ")[0]
        raise UserError(f"optimizer {name!r} flavor {config['flavor']!r} needs {' and '.join(missing)} "
                        f"({cls} has no default); add {', '.join(f'{k} = ...' for k in missing)}")


def _split(spec, hyper: dict[str, Any]) -> tuple[Spec, dict[str, Any]]:
    name, options = split_spec(spec)
    entry = REGISTRY.entry(name)
    return SPECS[entry.name], {**options, **hyper}


def resolve(spec) -> dict[str, Any]:
    """Every hyperparameter explicit, flavour, schedule and clipping included (JSON-safe)."""
    s, options = _split(spec, {})
    for key in _RUNTIME:
        options.pop(key, None)
    return {"name": s.name, **_resolve(s, options)}


def _params_list(params) -> list:
    if isinstance(params, torch.Tensor):
        return [params]
    params = list(params)
    if not params:
        raise UserError("the optimizer got no parameters to train")
    if isinstance(params[0], tuple) and len(params[0]) == 2 and isinstance(params[0][1], torch.Tensor):
        params = [p for _, p in params]  # named_parameters()
    return params


def get(spec, params, *, steps_per_epoch: int | None = None, epochs: int | None = None,
        **hyper) -> torch.optim.Optimizer:
    """Build the optimizer named by `spec` (a name or `{name = ..., options}`) over `params`.

    `hyper` overrides the spec's options; `batch_size` is needed only with `scale_lr_with_batch`,
    `steps_per_epoch`/`epochs` only by schedules that count in epochs."""
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    s, options = _split(spec, hyper)
    batch_size = options.pop("batch_size", None)
    config = _resolve(s, options)
    check_required(s.name, config)
    hypers = {k: v for k, v in config.items() if k not in ("flavor", "schedule", *COMMON_DEFAULTS)}
    schedule = Schedule(config["schedule"], steps_per_epoch=steps_per_epoch, epochs=epochs)
    try:
        optimizer = s.flavors[config["flavor"]].build(_params_list(params), hypers)
    except (ValueError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"optimizer {s.name!r}: {e}") from e
    factor = 1.0
    if config["scale_lr_with_batch"] is not None:
        if not batch_size:
            raise UserError(f"optimizer {s.name!r} scale_lr_with_batch needs the batch size "
                            "(optim.get(..., batch_size=N))")
        factor = float(batch_size) / config["scale_lr_with_batch"]
        if config["scale_lr_rule"] == "sqrt":
            factor = math.sqrt(factor)
    base_lrs = [float(g["lr"]) * factor for g in optimizer.param_groups]
    clip = {k: config[k] for k in CLIP_OPTIONS}
    optimizer._cnnbench = Controller(optimizer, schedule=schedule, clip=clip, base_lrs=base_lrs)
    return optimizer


def _controller(optimizer) -> Controller | None:
    return getattr(optimizer, "_cnnbench", None)


def on_epoch_end(optimizer, epoch: int, logs: dict | None = None) -> None:
    """The engine calls this after every epoch (0-based `epoch`, Keras' convention) with the epoch's
    logs (`{"loss": ..., "val_loss": ..., ...}`): per-epoch schedules and reduce-on-plateau."""
    c = _controller(optimizer)
    if c is not None:
        c.on_epoch_end(epoch, logs)


def current_lr(optimizer) -> float:
    """The learning rate the next step will use (first parameter group)."""
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


def state_dict(optimizer) -> dict:
    """Optimizer and schedule state: tensors, numbers, strings, lists and dicts only."""
    c = _controller(optimizer)
    return {"optimizer": optimizer.state_dict(), "cnnbench": c.state() if c is not None else None}


def load_state_dict(optimizer, state: dict) -> None:
    optimizer.load_state_dict(state["optimizer"])
    c = _controller(optimizer)
    if c is not None and state.get("cnnbench") is not None:
        c.load(state["cnnbench"])


def train_mode(optimizer) -> None:
    """Before training steps: optimizers that keep separate evaluation weights (Schedule-Free)
    switch back to their training iterate. No-op for the others."""
    if callable(getattr(optimizer, "train", None)) and "train_mode" in optimizer.param_groups[0]:
        optimizer.train()


def eval_mode(optimizer) -> None:
    """Before evaluation (validation, test, saving the final model): Schedule-Free optimizers load
    their averaged weights into the parameters. No-op for the others."""
    if callable(getattr(optimizer, "eval", None)) and "train_mode" in optimizer.param_groups[0]:
        optimizer.eval()


# --- registry entries (for `cnnbench list optimizers` and Registry.get/resolve) ---------------------
def _register(s: Spec) -> None:
    def factory(params, **options):
        return get({"name": s.name, **options}, params)

    factory.__name__ = s.name
    factory.__signature__ = inspect.Signature(
        [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)])
    flavors = {f: {"defaults": dict(fl.defaults), "implementation": fl.implementation} for f, fl in s.flavors.items()}
    REGISTRY.register(s.name, aliases=s.aliases, summary=s.summary, flavors=flavors, options=declared(s),
                      resolve=lambda **o: _resolve(s, o))(factory)


def declared(s: Spec) -> dict[str, Declared]:
    """The options of optimizer `s` as `cnnbench list optimizers NAME` shows them: its hyperparameters
    (the default flavour's defaults first, then those only other flavours have) and the common options."""
    flavors = [s.default_flavor, *(f for f in s.flavors if f != s.default_flavor)]
    out: dict[str, Declared] = {}
    for f in flavors:
        for key, default in s.flavors[f].defaults.items():
            if key not in out:
                d = Declared.of(key, HYPERPARAMETERS.get(key, Any), default)
                only = [g for g in flavors if key in s.flavors[g].defaults]
                if f != s.default_flavor:  # e.g. torch SGD's dampening: say which flavour has it
                    note = f" (flavor = {' or '.join(map(repr, only))} only)"
                    d = dataclasses.replace(d, option=dataclasses.replace(d.option, doc=d.option.doc + note))
                out[key] = d
    defaults = {**COMMON_DEFAULTS, "flavor": s.default_flavor, "schedule": "constant"}
    out.update({key: Declared.of(key, tp, defaults[key]) for key, tp in COMMON.items()})
    out["flavor"] = dataclasses.replace(out["flavor"], type=Literal[tuple(s.flavors)])  # this optimizer's flavours
    return out


for _spec in SPECS.values():
    _register(_spec)

assert all(normalize(n) in REGISTRY for n in SPECS)
