"""Keras 3 update rules as `torch.optim.Optimizer`s (the `flavor="keras"` implementations).

Each class reproduces `keras.optimizers.<Name>.update_step` (Keras 3.x, keras/src/optimizers/*.py)
operation by operation, including where epsilon enters, and Keras' decoupled weight decay that
the base optimizer applies before every update: `w <- w - w * weight_decay * learning_rate`.
Gradient clipping and learning-rate schedules are not here: `cnnbench.optim` runs them in step
hooks, in Keras' order (clip, then weight decay, then the update, with the schedule evaluated at
the 0-based iteration count).

State values are tensors and Python numbers only, so `state_dict()` loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import math
import sys

import torch


def _without_dynamo_import(name: str):
    """torch.optim.Optimizer's `name`, minus the import of torch._dynamo while nothing has imported it.

    torch wraps add_param_group, zero_grad, state_dict and load_state_dict in `torch._disable_dynamo`,
    which imports torch._dynamo on the first call (1-2.5 s of a worker's start-up, and memory in every
    process) only to wrap the method in `torch._dynamo.disable`. While torch._dynamo is not imported
    nothing can be compiling, and the wrapper is a no-op: call the method itself. Once anything has
    imported torch._dynamo (torch.compile), call torch's wrapped method as before. Same code either way.
    """
    wrapped = getattr(torch.optim.Optimizer, name)
    raw = getattr(wrapped, "__wrapped__", wrapped)

    def method(self, *args, **kwargs):
        return (wrapped if "torch._dynamo" in sys.modules else raw)(self, *args, **kwargs)

    method.__name__, method.__qualname__, method.__doc__ = name, f"KerasOptimizer.{name}", raw.__doc__
    return method


class KerasOptimizer(torch.optim.Optimizer):
    """Base: per-parameter loop, `step` counter, Keras' weight decay before the update."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)

    add_param_group = _without_dynamo_import("add_param_group")
    zero_grad = _without_dynamo_import("zero_grad")
    state_dict = _without_dynamo_import("state_dict")
    load_state_dict = _without_dynamo_import("load_state_dict")

    def _init_state(self, p: torch.Tensor, state: dict, group: dict) -> None:
        """Create the slots of a parameter (Keras' `build`)."""

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict, lr: float, t: int) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = float(group["lr"])
            wd = group.get("weight_decay") or 0.0
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    self._init_state(p, state, group)
            # Keras' torch backend updates all variables at once with torch._foreach ops; do the same
            # where a rule has such a form (one kernel per op instead of one per op and tensor).
            batches, rest = self._split_foreach(params)
            for batch in batches:
                t = self.state[batch[0]]["step"] + 1  # Keras' local_step = iterations + 1
                if wd:
                    torch._foreach_mul_(batch, 1 - wd * lr)
                self._update_foreach(batch, [p.grad for p in batch], [self.state[p] for p in batch], group, lr, t)
                for p in batch:
                    self.state[p]["step"] = t
            for p in rest:
                state = self.state[p]
                t = state["step"] + 1
                if wd:
                    p.sub_(p * wd * lr)
                self._update(p, p.grad, state, group, lr, t)
                state["step"] = t
        return loss

    #: Set to False to update tensor by tensor (the reference path; the tests compare both).
    foreach = True

    def _split_foreach(self, params: list) -> tuple[list[list], list]:
        """(batches updated together: same device, dtype and step count; the rest, one by one)."""
        if not self.foreach or type(self)._update_foreach is KerasOptimizer._update_foreach or len(params) < 2:
            return [], params
        batches: dict = {}
        for p in params:
            batches.setdefault((p.device, p.dtype, self.state[p]["step"]), []).append(p)
        return list(batches.values()), []

    def _update_foreach(self, params, grads, states, group, lr, t) -> None:
        raise NotImplementedError


class SGD(KerasOptimizer):
    """keras.optimizers.SGD: m <- mu*m - lr*g; w <- w + m (nesterov: w <- w + mu*m - lr*g)."""

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        if group["momentum"] != 0:
            state["momentum"] = torch.zeros_like(p)

    def _update_foreach(self, params, grads, states, group, lr, t):
        mu = group["momentum"]
        if mu != 0:
            ms = [s.setdefault("momentum", torch.zeros_like(p)) for p, s in zip(params, states)]
            torch._foreach_mul_(ms, mu)
            torch._foreach_add_(ms, grads, alpha=-lr)
            if group["nesterov"]:
                torch._foreach_add_(params, grads, alpha=-lr)
                torch._foreach_add_(params, ms, alpha=mu)
            else:
                torch._foreach_add_(params, ms)
        else:
            torch._foreach_add_(params, grads, alpha=-lr)

    def _update(self, p, g, state, group, lr, t):
        mu = group["momentum"]
        if mu != 0:
            m = state.setdefault("momentum", torch.zeros_like(p))
            m.copy_(m * mu - g * lr)
            if group["nesterov"]:
                p.add_(m * mu - g * lr)
            else:
                p.add_(m)
        else:
            p.sub_(g * lr)


class RMSprop(KerasOptimizer):
    """keras.optimizers.RMSprop: epsilon inside the square root, `sqrt(v + eps)` (centered:
    `sqrt(v - mg^2 + eps)`); momentum accumulates the increment `lr*g/sqrt(...)`."""

    def __init__(self, params, lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps, centered=centered,
                                      weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["velocity"] = torch.zeros_like(p)
        if group["momentum"] > 0:
            state["momentum"] = torch.zeros_like(p)
        if group["centered"]:
            state["average_gradient"] = torch.zeros_like(p)

    def _update_foreach(self, params, grads, states, group, lr, t):
        rho, eps = group["rho"], group["eps"]
        vs = [s["velocity"] for s in states]
        torch._foreach_mul_(vs, rho)
        torch._foreach_add_(vs, torch._foreach_mul(grads, grads), alpha=1 - rho)
        denominators = torch._foreach_add(vs, eps)
        if group["centered"]:
            ags = [s.setdefault("average_gradient", torch.zeros_like(p)) for p, s in zip(params, states)]
            torch._foreach_mul_(ags, rho)
            torch._foreach_add_(ags, grads, alpha=1 - rho)
            torch._foreach_add_(denominators, torch._foreach_mul(ags, ags), alpha=-1)
        torch._foreach_sqrt_(denominators)
        increments = torch._foreach_div(torch._foreach_mul(grads, lr), denominators)
        if group["momentum"] > 0:
            ms = [s.setdefault("momentum", torch.zeros_like(p)) for p, s in zip(params, states)]
            torch._foreach_mul_(ms, group["momentum"])
            torch._foreach_add_(ms, increments)
            torch._foreach_add_(params, ms, alpha=-1)
        else:
            torch._foreach_add_(params, increments, alpha=-1)

    def _update(self, p, g, state, group, lr, t):
        rho, eps = group["rho"], group["eps"]
        v = state["velocity"]
        v.copy_(rho * v + (1 - rho) * g.square())
        if group["centered"]:
            ag = state.setdefault("average_gradient", torch.zeros_like(p))
            ag.copy_(rho * ag + (1 - rho) * g)
            denominator = v - ag.square() + eps
        else:
            denominator = v + eps
        increment = (lr * g) / denominator.sqrt()
        if group["momentum"] > 0:
            m = state.setdefault("momentum", torch.zeros_like(p))
            m.copy_(group["momentum"] * m + increment)
            p.sub_(m)
        else:
            p.sub_(increment)


class Adam(KerasOptimizer):
    """keras.optimizers.Adam: `alpha = lr*sqrt(1-b2^t)/(1-b1^t)`, `w -= alpha*m/(sqrt(v)+eps)`
    (epsilon outside the bias correction, Kingma & Ba's "epsilon hat"); amsgrad on v."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, amsgrad=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, amsgrad=amsgrad, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p)
        state["velocity"] = torch.zeros_like(p)
        if group["amsgrad"]:
            state["velocity_hat"] = torch.zeros_like(p)

    def _update_foreach(self, params, grads, states, group, lr, t):
        b1, b2 = group["betas"]
        ms = [s["momentum"] for s in states]
        vs = [s["velocity"] for s in states]
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, grads, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_add_(vs, torch._foreach_mul(grads, grads), alpha=1 - b2)
        if group["amsgrad"]:
            v_hats = [s.setdefault("velocity_hat", torch.zeros_like(p)) for p, s in zip(params, states)]
            torch._foreach_maximum_(v_hats, vs)
            vs = v_hats
        denominators = torch._foreach_sqrt(vs)
        torch._foreach_add_(denominators, group["eps"])
        if params[0].device.type == "cpu" and params[0].dtype in (torch.float32, torch.float64):
            # Keras' w - (m * alpha) / d in one pass instead of three: the CPU addcdiv computes
            # w + ((-alpha) * m) / d, the same bits ((-alpha) * m is -(m * alpha) exactly; w + (-q) is w - q)
            torch._foreach_addcdiv_(params, ms, denominators, value=-alpha)
        else:  # elsewhere addcdiv rounds otherwise: CUDA as w + (-alpha) * (m / d), bf16/fp16 once in float32
            torch._foreach_add_(params, torch._foreach_div(torch._foreach_mul(ms, alpha), denominators), alpha=-1)

    def _update(self, p, g, state, group, lr, t):
        b1, b2 = group["betas"]
        m, v = state["momentum"], state["velocity"]
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m.add_((g - m) * (1 - b1))
        v.add_((g.square() - v) * (1 - b2))
        if group["amsgrad"]:
            v_hat = state.setdefault("velocity_hat", torch.zeros_like(p))
            torch.maximum(v_hat, v, out=v_hat)
            v = v_hat
        p.sub_((m * alpha) / (v.sqrt() + group["eps"]))


class AdamW(Adam):
    """keras.optimizers.AdamW: Adam with Keras' decoupled weight decay (default 0.004)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, amsgrad=False, weight_decay=0.004):
        super().__init__(params, lr=lr, betas=betas, eps=eps, amsgrad=amsgrad, weight_decay=weight_decay)


class Adagrad(KerasOptimizer):
    """keras.optimizers.Adagrad: accumulator starts at 0.1, `w -= lr*g/sqrt(acc + eps)`."""

    def __init__(self, params, lr=0.001, initial_accumulator_value=0.1, eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["accumulator"] = torch.full_like(p, group["initial_accumulator_value"])

    def _update(self, p, g, state, group, lr, t):
        acc = state["accumulator"]
        acc.add_(g.square())
        p.sub_((lr * g) / (acc + group["eps"]).sqrt())


class Adadelta(KerasOptimizer):
    """keras.optimizers.Adadelta (Zeiler 2012 with Keras' learning rate 0.001 multiplying the step)."""

    def __init__(self, params, lr=0.001, rho=0.95, eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["accumulated_grad"] = torch.zeros_like(p)
        state["accumulated_delta_var"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        rho, eps = group["rho"], group["eps"]
        ag, adv = state["accumulated_grad"], state["accumulated_delta_var"]
        ag.copy_(rho * ag + (1 - rho) * g.square())
        delta = -((adv + eps).sqrt() * g) / (ag + eps).sqrt()
        adv.copy_(rho * adv + (1 - rho) * delta.square())
        p.add_(lr * delta)


class Adamax(KerasOptimizer):
    """keras.optimizers.Adamax: u <- max(b2*u, |g|), `w -= lr*m/((1-b1^t)*(u+eps))`."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p)
        state["norm"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        b1, b2 = group["betas"]
        m, u = state["momentum"], state["norm"]
        m.add_((g - m) * (1 - b1))
        torch.maximum(b2 * u, g.abs(), out=u)
        p.sub_((lr * m) / ((1 - b1**t) * (u + group["eps"])))


class Nadam(KerasOptimizer):
    """keras.optimizers.Nadam: Dozat's momentum schedule `u_t = b1*(1 - 0.5*0.96^t)` with the
    running product of the u_t kept in the state."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p)
        state["velocity"] = torch.zeros_like(p)
        state["u_product"] = 1.0

    def _update(self, p, g, state, group, lr, t):
        b1, b2 = group["betas"]
        u_t = b1 * (1.0 - 0.5 * 0.96**t)
        u_t_1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product_t = state["u_product"] * u_t
        u_product_t_1 = u_product_t * u_t_1
        state["u_product"] = u_product_t
        m, v = state["momentum"], state["velocity"]
        m.add_((g - m) * (1 - b1))
        v.add_((g.square() - v) * (1 - b2))
        m_hat = (u_t_1 * m) / (1 - u_product_t_1) + ((1 - u_t) * g) / (1 - u_product_t)
        v_hat = v / (1 - b2**t)
        p.sub_((m_hat * lr) / (v_hat.sqrt() + group["eps"]))


class Lion(KerasOptimizer):
    """keras.optimizers.Lion (Chen et al. 2023): `w -= lr*sign(b1*m + (1-b1)*g)`, `m <- b2*m + (1-b2)*g`."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.99), weight_decay=0.0):
        if not 0 < betas[0] <= 1:
            raise ValueError(f"Lion needs 0 < beta_1 <= 1, got {betas[0]}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        b1, b2 = group["betas"]
        m = state["momentum"]
        p.sub_(lr * torch.sign(m * b1 + g * (1.0 - b1)))
        m.copy_(m * b2 + g * (1.0 - b2))


class Lamb(KerasOptimizer):
    """keras.optimizers.Lamb (You et al. 2019): Adam direction `r = m_hat/(sqrt(v_hat)+eps)` scaled
    per tensor by the trust ratio `||w||/||r||` (1 when either norm is 0)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["momentum"] = torch.zeros_like(p)
        state["velocity"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        b1, b2 = group["betas"]
        m, v = state["momentum"], state["velocity"]
        m.add_((g - m) * (1 - b1))
        v.add_((g.square() - v) * (1 - b2))
        m_hat = m / (1.0 - b1**t)
        update = m_hat / ((v / (1.0 - b2**t)).sqrt() + group["eps"])
        w_norm = p.square().sum().sqrt()
        g_norm = update.square().sum().sqrt()
        one = torch.ones((), dtype=p.dtype, device=p.device)
        ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, one), one)
        p.sub_(ratio * lr * update)


class Ftrl(KerasOptimizer):
    """keras.optimizers.Ftrl (McMahan et al. 2013, "Ad click prediction: a view from the trenches")."""

    def __init__(self, params, lr=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, weight_decay=0.0):
        for key, value in dict(initial_accumulator_value=initial_accumulator_value,
                               l1_regularization_strength=l1_regularization_strength,
                               l2_regularization_strength=l2_regularization_strength,
                               l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength).items():
            if value < 0:
                raise ValueError(f"Ftrl needs {key} >= 0, got {value}")
        if learning_rate_power > 0:
            raise ValueError(f"Ftrl needs learning_rate_power <= 0, got {learning_rate_power}")
        super().__init__(params, dict(
            lr=lr, learning_rate_power=learning_rate_power, initial_accumulator_value=initial_accumulator_value,
            l1_regularization_strength=l1_regularization_strength,
            l2_regularization_strength=l2_regularization_strength,
            l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength,
            beta=beta, weight_decay=weight_decay))

    def _init_state(self, p, state, group):
        state["accumulator"] = torch.full_like(p, group["initial_accumulator_value"])
        state["linear"] = torch.zeros_like(p)

    def _update(self, p, g, state, group, lr, t):
        accum, linear = state["accumulator"], state["linear"]
        lr_power = group["learning_rate_power"]
        l1 = group["l1_regularization_strength"]
        l2_reg = group["l2_regularization_strength"] + group["beta"] / (2.0 * lr)
        grad_to_use = g + 2 * group["l2_shrinkage_regularization_strength"] * p
        new_accum = accum + g.square()
        linear.add_(grad_to_use - ((new_accum.pow(-lr_power) - accum.pow(-lr_power)) / lr) * p)
        quadratic = new_accum.pow(-lr_power) / lr + 2 * l2_reg
        linear_clipped = linear.clamp(-l1, l1)
        p.copy_((linear_clipped - linear) / quadratic)
        accum.copy_(new_accum)
