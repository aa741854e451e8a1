"""Learning-rate schedules, batch-size scaling and gradient clipping, driven by optimizer hooks.

A schedule is a pure function of time: `lr(t) = base_lr * warmup(t) * factor(t) * plateau_scale`,
where `base_lr` is each parameter group's learning rate (after `scale_lr_with_batch`), `t` is the
0-based optimizer step (`per = "step"`, the default) or the 0-based epoch (`per = "epoch"`), and
`plateau_scale` is the state of `reduce_on_plateau`. Durations are given in epochs (floats are
fine) or, for warmup, in steps; with `per = "step"` epochs are converted with `steps_per_epoch`.

Every schedule accepts `warmup_epochs` / `warmup_steps`: a linear ramp `(t + 1) / W` over the
first W steps (or epochs) that multiplies the schedule (Goyal et al. 2017, "Accurate, large
minibatch SGD"). `cosine` and `warmup_cosine` start their decay after the warmup.

| name | options (defaults) | lr / base_lr at time t (in epochs e, or steps) |
|------|--------------------|-------------------------------------------------|
| constant | - | 1 |
| step | step_size=10, gamma=0.1, milestones=None | gamma ** floor(e / step_size), or gamma ** #(milestones <= e) |
| exponential | decay_rate=0.9, decay_epochs=1.0, staircase=False | decay_rate ** (e / decay_epochs) (floored if staircase) |
| cosine | alpha=0.0, decay_epochs=None (= epochs - warmup) | alpha + (1 - alpha) * (1 + cos(pi * p)) / 2, p = clip((e - warmup) / decay_epochs, 0, 1) (Loshchilov & Hutter 2017) |
| warmup_cosine | as cosine, warmup_epochs=1.0 | the same with a default warmup |
| one_cycle | pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal="cos" | torch.optim.lr_scheduler.OneCycleLR with max_lr = base lr (Smith & Topin 2019) |
| reduce_on_plateau | monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4, cooldown=0, min_lr=0.0 | keras.callbacks.ReduceLROnPlateau, evaluated in on_epoch_end (mode="auto": `cnnbench.metrics.monitor_mode`) |
| polynomial | decay_steps=None, decay_epochs=None (neither: the whole run), end_learning_rate=1e-4, power=1.0, cycle=False | an absolute rate, not a factor: `(base_lr - end) * (1 - t/D)^power + end` with `t = min(t, D)`; cycle: `D = D * ceil(t/D)` (`* 1` at t = 0) — tf.compat.v1.train.polynomial_decay = keras.optimizers.schedules.PolynomialDecay |

`polynomial` (aliases `polynomial_decay`, `PolynomialDecay`, `poly`) counts `t` in optimizer steps as
TF does (the global step before the update, 0 for the first); `decay_steps` is TF's argument in
steps, `decay_epochs` the same in epochs. Its `end_learning_rate` is absolute, so `scale_lr_with_batch`
scales the start of the decay, not its end; a warmup multiplies the decayed rate.

Clipping (Keras' `clipnorm`, `global_clipnorm`, `clipvalue`; at most one) is applied to the
gradients in a step pre-hook, before the optimizer's update (and before Keras' weight decay).

Why not torch.optim.lr_scheduler: every schedule here is a closed form of the time `t`, kept by the
`Controller` (step, epoch, plateau state: what a checkpoint stores and a resume needs), so the rate
of any step is known without replaying the run. torch's schedulers update the rate from the previous
one (chainable: `lr * gamma` each time), which rounds differently from `base_lr * gamma ** k` (checked
with torch 2.x: StepLR(step_size=1, gamma=0.3) at lr 0.07 differs from `step` in the last bit in 20 of
30 epochs; ExponentialLR, CosineAnnealingLR, OneCycleLR and PolynomialLR differ likewise), and their state is
`last_epoch` plus the current rates, which existing checkpoints do not hold. Schedule by schedule:
- `step` per epoch with whole-epoch `step_size` / `milestones` has StepLR's / MultiStepLR's meaning;
  kept for the numbers above, for fractional epochs and for `per = "step"` (a decay at an epoch
  boundary, counted in steps).
- `exponential` is Keras' ExponentialDecay (`decay_rate ** (e / decay_epochs)`, `staircase`), of which
  ExponentialLR is the per-epoch, `decay_epochs = 1` case.
- `cosine` / `warmup_cosine` are Keras' CosineDecay (with warmup): the rate stays at `alpha` after the
  decay; CosineAnnealingLR (`eta_min = alpha * lr`) is the same curve up to `T_max` but rises again
  after it, and has no warmup.
- `one_cycle` follows OneCycleLR's two-phase rate (`three_phase = False`) but leaves momentum alone,
  where OneCycleLR by default also cycles momentum (or Adam's beta1) between 0.85 and 0.95; past the
  last step it stays at the final rate, where OneCycleLR raises.
- `reduce_on_plateau` is Keras' ReduceLROnPlateau: an absolute `min_delta`, a reduction once `wait >=
  patience`, no reduction once the rate is at `min_lr`; torch's compares with a relative threshold
  (`threshold_mode = "rel"`) and reduces only after more than `patience` bad epochs.
- `polynomial` is TF's polynomial_decay, to an absolute `end_learning_rate`, with `cycle`; PolynomialLR
  decays to 0 and has neither.
- The warmup `(t + 1) / W` multiplies any schedule; LinearLR ramps from `start_factor` on another line
  (`start + (1 - start) * t / W`).
"""  # noqa: E501  (a Markdown table: one row a line)

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch

from ..errors import UserError, did_you_mean
from ..registry import Declared, Registry, declare

_WARMUP = {"warmup_epochs": 0.0, "warmup_steps": 0}

SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": 10.0, "gamma": 0.1, "milestones": None},
    "exponential": {"decay_rate": 0.9, "decay_epochs": 1.0, "staircase": False},
    "cosine": {"alpha": 0.0, "decay_epochs": None},
    "warmup_cosine": {"alpha": 0.0, "decay_epochs": None},
    "one_cycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"},
    "reduce_on_plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 10, "mode": "auto",
                          "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0},
    # tf.compat.v1.train.polynomial_decay / keras.optimizers.schedules.PolynomialDecay defaults
    "polynomial": {"decay_steps": None, "decay_epochs": None, "end_learning_rate": 0.0001, "power": 1.0,
                   "cycle": False},
}
_SCHEDULE_ALIASES = {  # matched case-insensitively, without _ - . or spaces (registry.normalize)
    "none": "constant", "StepLR": "step", "step_decay": "step", "multistep": "step",
    "ExponentialDecay": "exponential", "CosineDecay": "cosine", "cosine_annealing": "cosine",
    "linear_warmup_cosine": "warmup_cosine", "OneCycleLR": "one_cycle", "ReduceLROnPlateau": "reduce_on_plateau",
    "plateau": "reduce_on_plateau", "PolynomialDecay": "polynomial", "poly": "polynomial"}

_SUMMARIES = {
    "constant": "the optimizer's learning rate throughout (with an optional warmup)",
    "step": "x gamma every step_size epochs, or at each of the milestones (torch StepLR / MultiStepLR)",
    "exponential": "decay_rate ** (epochs / decay_epochs), floored with staircase (Keras ExponentialDecay)",
    "cosine": "cosine decay to alpha x lr after the warmup, then flat (Keras CosineDecay; Loshchilov & Hutter 2017)",
    "warmup_cosine": "cosine with a one-epoch linear warmup by default (Goyal et al. 2017)",
    "one_cycle": "up to the rate then down, two phases (torch OneCycleLR without momentum cycling; Smith & "
                 "Topin 2019)",
    "reduce_on_plateau": "x factor when the monitored value stops improving (Keras ReduceLROnPlateau)",
    "polynomial": "(lr - end) x (1 - t/D) ** power + end, optionally cycling (tf.compat.v1.train.polynomial_decay)",
}



#: Every schedule option, declared once by name (the defaults per schedule are in SCHEDULES).
OPTIONS: dict[str, Any] = {
    "per": declare(Literal["step", "epoch"], "update the rate every optimizer step or once per epoch"),
    "warmup_epochs": declare(float, "a linear warmup (t + 1) / W over this many epochs", ge=0),
    "warmup_steps": declare(int, "the same warmup counted in optimizer steps", ge=0),
    "step_size": declare(float, "epochs between two decays", gt=0),
    "gamma": declare(float, "the factor at each decay", gt=0),
    "milestones": declare(Sequence[float] | None, "the epochs at which to decay (instead of step_size)", ge=0),
    "decay_rate": declare(float, "the factor per decay_epochs", gt=0),
    "decay_epochs": declare(float | None, "epochs over which to decay (cosine: absent = the run after the warmup)",
                         gt=0),
    "staircase": declare(bool, "decay in whole steps of decay_epochs"),
    "alpha": declare(float, "the final rate as a fraction of the initial one", ge=0, le=1),
    "pct_start": declare(float, "the share of the run spent increasing the rate", gt=0, lt=1),
    "div_factor": declare(float, "the initial rate is lr / div_factor", gt=0),
    "final_div_factor": declare(float, "the final rate is the initial one / final_div_factor", gt=0),
    "anneal": declare(Literal["cos", "linear"], "the shape of both phases"),
    "monitor": declare(str, "the logged value to watch (val_loss, val_accuracy, ...)"),
    "factor": declare(float, "the factor at each reduction", gt=0, lt=1),
    "patience": declare(int, "epochs without improvement before a reduction", ge=0),
    "mode": declare(Literal["auto", "min", "max"], "whether the monitored value should fall or rise (auto: from its "
                 "name)"),
    "min_delta": declare(float, "the least change that counts as an improvement", ge=0),
    "cooldown": declare(int, "epochs to wait after a reduction", ge=0),
    "min_lr": declare(float, "the rate is not reduced below this", ge=0),
    "decay_steps": declare(int | None, "optimizer steps over which to decay (TF's argument; absent: decay_epochs or "
                        "the whole run)", gt=0),
    "end_learning_rate": declare(float, "the absolute rate at the end of the decay", ge=0),
    "power": declare(float, "the polynomial's power (1: linear)", gt=0),
    "cycle": declare(bool, "restart the decay with a longer period after it ends (TF's cycle)"),
}

CLIP_OPTIONS = ("clipvalue", "clipnorm", "global_clipnorm")


def _defaults(name: str) -> dict[str, Any]:
    defaults = {**SCHEDULES[name], "per": "step", **_WARMUP}
    if name == "warmup_cosine":
        defaults["warmup_epochs"] = 1.0
    if name == "reduce_on_plateau":
        defaults["per"] = "epoch"
    return defaults


REGISTRY = Registry("schedule")


def _register(name: str) -> None:
    def factory(**options):
        return resolve_schedule({"name": name, **options})

    factory.__name__ = name
    REGISTRY.register(name, aliases=[a for a, n in _SCHEDULE_ALIASES.items() if n == name], summary=_SUMMARIES[name],
                      options={k: Declared.of(k, OPTIONS[k], v) for k, v in _defaults(name).items()},
                      resolve=lambda **o: {k: v for k, v in factory(**o).items() if k != "name"})(factory)


def _number(where: str, key: str, value, default):
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where} option {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if default is not None and not isinstance(value, type(default)):
        raise UserError(f"{where} option {key!r} must be a {type(default).__name__}, got {value!r}")
    return value


def resolve_schedule(spec) -> dict[str, Any]:
    """`None`, a name, or `{name = ..., options}` -> every option explicit (JSON-safe)."""
    if spec is None:
        spec = "constant"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name", "constant"), str):
        raise UserError(f"schedule must be a name or a table with a 'name' key, got {spec!r}")
    entry = REGISTRY.entry(spec.get("name", "constant"))
    name, defaults = entry.name, _defaults(entry.name)
    out = {"name": name, **defaults}
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in defaults:
            hint = did_you_mean(key, sorted(defaults))
            raise UserError(f"schedule {name!r} has no option {key!r}; {hint}allowed: {', '.join(sorted(defaults))}")
        default = 0.0 if key == "decay_epochs" and value is not None else defaults[key]  # epochs are floats
        if key == "decay_steps" and value is not None:
            default = 0  # a whole number of steps
        out[key] = _number(f"schedule {name!r}", key, value, default)
        if out[key] is not None:
            entry.options[key].check(out[key], f"schedule {name!r}")  # type and limits (OPTIONS)
    # what one option's declaration cannot say: rules across options
    if name == "reduce_on_plateau" and out["per"] != "epoch":
        raise UserError("reduce_on_plateau is evaluated once per epoch; drop per = 'step'")
    if name == "step" and out["milestones"] is not None:
        out["milestones"] = [float(m) for m in out["milestones"]]
    if out["warmup_epochs"] and out["warmup_steps"]:
        raise UserError("give warmup_epochs or warmup_steps, not both")
    if name == "polynomial":
        _check_polynomial(out)
    return out


def _check_polynomial(out: dict[str, Any]) -> None:
    where = "schedule 'polynomial'"
    if out["decay_steps"] is not None and out["decay_epochs"] is not None:
        raise UserError(f"{where}: give decay_steps or decay_epochs, not both")
    if out["decay_steps"] is not None and out["per"] != "step":
        raise UserError(f"{where} decay_steps counts optimizer steps; with per = 'epoch' give decay_epochs")


class Schedule:
    """The learning-rate factor of a resolved schedule, for a given run length."""

    def __init__(self, config: dict[str, Any], *, steps_per_epoch: int | None, epochs: int | None):
        self.config = config
        self.name = config["name"]
        self.per = config["per"]
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        needs_epochs = self.name in ("cosine", "warmup_cosine") and config["decay_epochs"] is None
        needs_epochs = needs_epochs or self.name == "one_cycle"
        in_steps = self.name == "polynomial" and config["decay_steps"] is not None  # TF's own unit
        needs_epochs = needs_epochs or (self.name == "polynomial" and not in_steps and config["decay_epochs"] is None)
        if needs_epochs and not epochs:
            raise UserError(f"schedule {self.name!r} needs the number of epochs (optim.get(..., epochs=N))")
        if (self.per == "step" and self.name not in ("constant", "reduce_on_plateau") and not in_steps
                and not steps_per_epoch):
            raise UserError(f"per-step schedule {self.name!r} needs steps_per_epoch "
                            "(optim.get(..., steps_per_epoch=N))")
        if self.per == "step" and config["warmup_epochs"] and not steps_per_epoch:
            raise UserError("warmup_epochs with per-step updates needs steps_per_epoch "
                            "(optim.get(..., steps_per_epoch=N))")
        if self.per == "epoch" and config["warmup_steps"]:
            raise UserError("warmup_steps needs per = 'step'; use warmup_epochs for a per-epoch schedule")

    # Time units: `t` is a step count (per="step") or an epoch count (per="epoch").
    def _epochs(self, t: float) -> float:
        return t / self.steps_per_epoch if self.per == "step" else float(t)

    def _units(self, epochs: float) -> float:
        return epochs * self.steps_per_epoch if self.per == "step" else float(epochs)

    def warmup_length(self) -> float:
        c = self.config
        if c["warmup_steps"]:
            return float(c["warmup_steps"])
        return self._units(c["warmup_epochs"]) if c["warmup_epochs"] else 0.0

    def total(self) -> float:
        return self._units(self.epochs)

    def rate(self, base_lr: float, t: int) -> float:
        """The learning rate at time t for a parameter group whose learning rate is `base_lr`."""
        if self.name == "polynomial":
            return self._warmup(t) * self._polynomial(base_lr, t)
        return base_lr * self.factor(t)

    def _warmup(self, t: int) -> float:
        w = self.warmup_length()
        return min(1.0, (t + 1) / w) if w > 0 else 1.0

    def _polynomial(self, base_lr: float, t: int) -> float:
        """tf.compat.v1.train.polynomial_decay(base_lr, t, D, end_learning_rate, power, cycle):
        `(base_lr - end) * (1 - t'/D')^power + end`, where without cycle `t' = min(t, D)`, `D' = D`,
        and with cycle `t' = t`, `D' = D * ceil(t/D)` (`D' = D` at t = 0)."""
        c = self.config
        if c["decay_steps"] is not None:
            span = float(c["decay_steps"])
        elif c["decay_epochs"] is not None:
            span = self._units(c["decay_epochs"])
        else:
            span = self.total()
        t = float(t)
        if c["cycle"]:
            # TF: "Find the first multiple of decay_steps that is bigger than global_step. If global_step
            # is zero set the multiplier to 1" (ceil(0) would divide by zero).
            span = span * (1.0 if t == 0 else math.ceil(t / span))
        else:
            t = min(t, span)
        end = c["end_learning_rate"]
        return (base_lr - end) * (1.0 - t / span) ** c["power"] + end

    def factor(self, t: int) -> float:
        """lr / base_lr at time t (every schedule but `polynomial`, whose end rate is absolute)."""
        c = self.config
        w = self.warmup_length()
        warm = min(1.0, (t + 1) / w) if w > 0 else 1.0
        name = self.name
        e = self._epochs(t) if name not in ("constant", "reduce_on_plateau") else 0.0
        if name in ("constant", "reduce_on_plateau"):
            return warm
        elif name == "step":
            if c["milestones"] is not None:
                f = c["gamma"] ** sum(1 for m in c["milestones"] if e >= m)
            else:
                f = c["gamma"] ** math.floor(e / c["step_size"] + 1e-9)
        elif name == "exponential":
            p = e / c["decay_epochs"]
            f = c["decay_rate"] ** (math.floor(p + 1e-9) if c["staircase"] else p)
        elif name in ("cosine", "warmup_cosine"):
            span = self._units(c["decay_epochs"]) if c["decay_epochs"] is not None else self.total() - w
            p = min(max((t - w) / span, 0.0), 1.0) if span > 0 else 1.0
            f = c["alpha"] + (1 - c["alpha"]) * 0.5 * (1 + math.cos(math.pi * p))
        elif name == "one_cycle":
            f = self._one_cycle(t)
        elif name == "polynomial":
            raise AssertionError("polynomial decay has an absolute end rate: use Schedule.rate(base_lr, t)")
        else:  # pragma: no cover
            raise AssertionError(name)
        return warm * f

    def _one_cycle(self, t: int) -> float:
        # torch.optim.lr_scheduler.OneCycleLR (two phases), in units of the base lr (= max_lr).
        c = self.config
        total = self.total()
        initial = 1.0 / c["div_factor"]
        minimum = initial / c["final_div_factor"]
        end_up = c["pct_start"] * total - 1
        end_down = total - 1
        anneal = (lambda a, b, p: b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)) if c["anneal"] == "cos" \
            else (lambda a, b, p: (b - a) * p + a)
        if t <= end_up:
            return anneal(initial, 1.0, t / end_up if end_up > 0 else 1.0)
        p = (t - end_up) / (end_down - end_up) if end_down > end_up else 1.0
        return anneal(1.0, minimum, min(p, 1.0))


class Controller:
    """Attached to an optimizer as `optimizer._cnnbench`: runs clipping and the schedule in step
    hooks, and owns the schedule state (checkpointed by `optim.state_dict`)."""

    def __init__(self, optimizer, *, schedule: Schedule, clip: dict[str, Any], base_lrs: list[float]):
        self.optimizer = optimizer
        self.schedule = schedule
        self.clip = clip
        self.base_lrs = list(base_lrs)
        self.step = 0  # completed optimizer steps
        self.epoch = 0  # completed epochs
        self.plateau = {"scale": 1.0, "best": None, "wait": 0, "cooldown_counter": 0}
        optimizer.register_step_pre_hook(self._pre_step)  # for the optimizer's life: never removed
        optimizer.register_step_post_hook(self._post_step)
        self.apply_lr()

    # --- learning rate ---------------------------------------------------------------------------
    def _time(self) -> int:
        return self.step if self.schedule.per == "step" else self.epoch

    def lr_of(self, base: float) -> float:
        """The learning rate now of a parameter group whose base learning rate is `base`."""
        return self.schedule.rate(base, self._time()) * self.plateau["scale"]

    def apply_lr(self) -> None:
        min_lr = self.schedule.config.get("min_lr") or 0.0
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            lr = self.lr_of(base)
            if self.schedule.name == "reduce_on_plateau" and self.plateau["scale"] < 1.0:
                lr = max(lr, min_lr)
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    # --- hooks -------------------------------------------------------------------------------------
    def _pre_step(self, optimizer, args, kwargs):
        self.apply_lr()
        self.clip_gradients()
        self.step += 1
        return None

    def _post_step(self, optimizer, args, kwargs):
        self.apply_lr()  # the learning rate of the next step, as Keras reports it

    def clip_gradients(self) -> None:
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        with torch.no_grad():
            if self.clip.get("clipnorm"):
                c = float(self.clip["clipnorm"])
                for g in grads:  # Keras' clip_by_norm: g * c / max(||g||, c)
                    g.mul_(c / torch.clamp(torch.linalg.vector_norm(g), min=c))
            elif self.clip.get("global_clipnorm"):
                c = float(self.clip["global_clipnorm"])
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                scale = c * torch.minimum(1.0 / norm, torch.tensor(1.0 / c, dtype=norm.dtype, device=norm.device))
                for g in grads:
                    g.mul_(scale.to(g.dtype))
            elif self.clip.get("clipvalue"):
                v = float(self.clip["clipvalue"])
                for g in grads:
                    g.clamp_(-v, v)

    # --- epochs ----------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs: dict | None) -> None:
        self.epoch = int(epoch) + 1
        if self.schedule.name == "reduce_on_plateau":
            self._plateau_update(logs or {})
        self.apply_lr()

    def _plateau_update(self, logs: dict) -> None:
        c, s = self.schedule.config, self.plateau
        current = logs.get(c["monitor"])
        if current is None:
            warnings.warn(f"reduce_on_plateau monitors {c['monitor']!r}, which is not in the epoch logs "
                          f"({', '.join(map(str, logs)) or 'none'}); learning rate unchanged", stacklevel=3)
            return
        current = float(current)
        from ..metrics import monitor_mode  # the one rule for mode="auto" (Keras'), shared with EarlyStopping

        mode = monitor_mode(c["monitor"], c["mode"])
        delta = abs(c["min_delta"])
        improved = s["best"] is None or (current + delta < s["best"] if mode == "min" else current - delta > s["best"])
        if s["cooldown_counter"] > 0:
            s["cooldown_counter"] -= 1
            s["wait"] = 0
        if improved:
            s["best"] = current
            s["wait"] = 0
        elif s["cooldown_counter"] <= 0:
            s["wait"] += 1
            if s["wait"] >= c["patience"]:
                old = self.lr_of(self.base_lrs[0]) if self.base_lrs else 0.0
                if old > c["min_lr"]:
                    s["scale"] *= c["factor"]
                    s["cooldown_counter"] = c["cooldown"]
                    s["wait"] = 0

    # --- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "base_lrs": list(self.base_lrs),
                "plateau": dict(self.plateau), "schedule": dict(self.schedule.config)}

    def load(self, state: dict[str, Any]) -> None:
        if state.get("schedule", self.schedule.config) != self.schedule.config:
            raise UserError("the checkpoint was written with a different learning-rate schedule "
                            f"({state['schedule']}); resume with the same optimizer settings")
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.plateau = dict(state["plateau"])
        self.apply_lr()


for _name in SCHEDULES:
    _register(_name)
