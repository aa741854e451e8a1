"""TensorFlow 1.x update rules as `torch.optim.Optimizer`s (the `flavor="tf1"` implementations).

Each class is the `tf.compat.v1.train.<Name>Optimizer` dense update, i.e. the C++ kernel it calls
(tensorflow/core/kernels/training_ops.cc), with the slot initialisation of the Python class
(tensorflow/python/training/<name>.py). The TF 1.x optimizers have no weight decay (TF 1.x models
added L2 penalties to the loss), so the tf1 flavour has no `weight_decay` option.

| class (TF 1.x) | kernel | update, per step t = 1, 2, ... |
|---|---|---|
| GradientDescentOptimizer | ApplyGradientDescent | `w <- w - lr*g` |
| MomentumOptimizer | ApplyMomentum | `a <- mu*a + g; w <- w - lr*a` (use_nesterov: `w <- w - lr*g - lr*mu*a`) |
| RMSPropOptimizer | ApplyRMSProp | `ms <- ms + (g^2 - ms)*(1-rho)` (ms starts at **1**); `mom <- momentum*mom + lr*g/sqrt(ms + eps)`; `w <- w - mom` |
| (centered=True) | ApplyCenteredRMSProp | also `mg <- mg + (g - mg)*(1-rho)`; denominator `sqrt(ms - mg^2 + eps)` |
| AdamOptimizer | ApplyAdam | Keras' form (`keras_rules.Adam`): `lr_t = lr*sqrt(1-b2^t)/(1-b1^t)`, `w <- w - lr_t*m/(sqrt(v) + eps)`, eps 1e-8 |
| AdagradOptimizer | ApplyAdagrad | `acc <- acc + g^2` (acc starts at 0.1); `w <- w - lr*g/sqrt(acc)` (**no** epsilon) |
| AdadeltaOptimizer | ApplyAdadelta | Keras' form (`keras_rules.Adadelta`) with eps 1e-8 |

Adam and Adadelta differ from Keras 3 only in their defaults, so catalog.py builds them from the
Keras rules; the classes here are the rules whose arithmetic differs.
"""  # noqa: E501  (a Markdown table: one row a line)

from __future__ import annotations

import torch

from .keras_rules import KerasOptimizer


class Momentum(KerasOptimizer):
    """tf.compat.v1.train.MomentumOptimizer (momentum=0: GradientDescentOptimizer).

    `a <- mu*a + g; w <- w - lr*a`; use_nesterov: `w <- w - (lr*g + lr*mu*a)`. The accumulator holds
    gradients, not steps, so a learning rate that changes acts on the whole accumulator (unlike
    Keras' SGD, whose buffer holds `lr*g`)."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    def _init_state(self, p, state, group):
        if group["momentum"] != 0 or group["nesterov"]:
            state["accumulation"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        mu = group["momentum"]
        if mu == 0 and not group["nesterov"]:
            p.sub_(g * lr)  # ApplyGradientDescent
            return
        a = state["accumulation"]
        a.copy_(a * mu + g)
        if group["nesterov"]:
            p.sub_(g * lr + a * mu * lr)
        else:
            p.sub_(a * lr)


class RMSProp(KerasOptimizer):
    """tf.compat.v1.train.RMSPropOptimizer: the mean square `ms` starts at ones (TF 1.x's slot
    initialiser), epsilon 1e-10 inside the square root, momentum accumulates `lr*g/sqrt(...)`.

    `ms <- ms + (g^2 - ms)*(1-rho)`; centered: `mg <- mg + (g - mg)*(1-rho)`, `d = ms - mg^2 + eps`,
    else `d = ms + eps`; `mom <- momentum*mom + lr*g/sqrt(d)`; `w <- w - mom`."""

    def __init__(self, params, lr, rho=0.9, momentum=0.0, eps=1e-10, centered=False):
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps, centered=centered))

    def _init_state(self, p, state, group):
        state["rms"] = torch.ones_like(p)
        state["momentum"] = torch.zeros_like(p)
        if group["centered"]:
            state["mg"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        rho, eps = group["rho"], group["eps"]
        ms, mom = state["rms"], state["momentum"]
        ms.add_((g.square() - ms) * (1 - rho))
        if group["centered"]:
            mg = state["mg"]
            mg.add_((g - mg) * (1 - rho))
            denominator = ms - mg.square() + eps
        else:
            denominator = ms + eps
        mom.copy_(mom * group["momentum"] + (g * lr) / denominator.sqrt())
        p.sub_(mom)


class Adagrad(KerasOptimizer):
    """tf.compat.v1.train.AdagradOptimizer (kernel ApplyAdagrad, no epsilon):
    `acc <- acc + g^2` with acc starting at `initial_accumulator_value` (0.1); `w <- w - lr*g/sqrt(acc)`."""

    def __init__(self, params, lr, initial_accumulator_value=0.1):
        if not initial_accumulator_value > 0:
            # TF 1.x: "initial_accumulator_value must be positive" (there is no epsilon to guard sqrt(0))
            raise ValueError(f"initial_accumulator_value must be positive, got {initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value))

    def _init_state(self, p, state, group):
        state["accumulator"] = torch.full_like(p, group["initial_accumulator_value"])

    def _update(self, p, g, state, group, lr, t):
        acc = state["accumulator"]
        acc.add_(g.square())
        p.sub_(g * lr * acc.rsqrt())
