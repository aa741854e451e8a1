"""The optimizers' options, declared once by name for every optimizer and flavour (an optimizer's
defaults come from its flavour in catalog.py; what a name means, its type and its limits from here):
`resolve` checks each given value against this, and `cnnbench list optimizers NAME` and the docs print it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ..registry import Option, declare

Rate = Annotated[float, Option("", ge=0, lt=1)]



HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": declare(float, "the step size (torch: lr)", gt=0),
    "beta_1": declare(float, "decay of the first-moment (mean) estimate (torch: betas[0])", ge=0, lt=1),
    "beta_2": declare(float, "decay of the second-moment estimate (torch: betas[1])", ge=0, lt=1),
    "epsilon": declare(float, "added to the denominator for numerical stability (torch: eps)", ge=0),
    "amsgrad": declare(bool, "use the maximum of past second moments (Reddi et al. 2018)"),
    "weight_decay": declare(float, "weight decay (decoupled in Keras 3 and AdamW; L2 in torch's SGD/Adam)", ge=0),
    "momentum": declare(float, "momentum (heavy ball; with nesterov, Nesterov's)", ge=0, le=1),
    "nesterov": declare(bool, "Nesterov momentum"),
    "dampening": declare(float, "torch SGD's dampening of the momentum buffer", ge=0, le=1),
    "rho": declare(float, "decay of the squared-gradient average (RMSprop, Adadelta; torch RMSprop: alpha)",
                ge=0, lt=1),
    "centered": declare(bool, "RMSprop normalised by the gradient's variance instead of its second moment"),
    "initial_accumulator_value": declare(float, "the starting value of Adagrad's / Ftrl's accumulators", ge=0),
    "lr_decay": declare(float, "torch Adagrad's learning-rate decay per step", ge=0),
    "momentum_decay": declare(float, "torch NAdam's momentum decay (psi)", ge=0),
    "decoupled_weight_decay": declare(bool, "torch: decay the weights apart from the gradient (AdamW-style)"),
    "learning_rate_power": declare(float, "Ftrl's learning-rate power", le=0),
    "l1_regularization_strength": declare(float, "Ftrl's L1 strength", ge=0),
    "l2_regularization_strength": declare(float, "Ftrl's L2 strength", ge=0),
    "l2_shrinkage_regularization_strength": declare(float, "Ftrl's L2 shrinkage strength", ge=0),
    "beta": declare(float, "Ftrl's beta", ge=0),
    "trust_coefficient": declare(float, "LARS' trust coefficient (eta) for the layer-wise rate", gt=0),
    "final_lr": declare(float, "AdaBound's final (SGD) learning rate", gt=0),
    "gamma": declare(float, "AdaBound's convergence speed of the bounds", gt=0),
    "k": declare(int, "Lookahead: inner steps per slow-weights update", ge=1),
    "lookahead_alpha": declare(float, "Lookahead: step of the slow weights towards the fast ones", gt=0, le=1),
    "rectify": declare(bool, "AdaBelief: rectify the variance as RAdam does"),
    "weight_decouple": declare(bool, "AdaBelief: decoupled weight decay"),
    "r": declare(float, "Schedule-Free: the weighting power of the average", ge=0),
    "warmup_steps": declare(int, "Schedule-Free: linear warm-up steps", ge=0),
    "weight_lr_power": declare(float, "Schedule-Free: the power of the learning rate in the average's weights", ge=0),
    "ns_steps": declare(int, "Muon: Newton-Schulz iterations", ge=1),
    "adamw_lr": declare(float, "Muon: AdamW's learning rate for the parameters Muon does not take", gt=0),
    "adamw_beta_1": declare(float, "Muon: AdamW's beta_1", ge=0, lt=1),
    "adamw_beta_2": declare(float, "Muon: AdamW's beta_2", ge=0, lt=1),
    "adamw_epsilon": declare(float, "Muon: AdamW's epsilon", ge=0),
    "adamw_wd": declare(float, "Muon: AdamW's weight decay", ge=0),
}

#: The options every optimizer takes besides its hyperparameters.
COMMON: dict[str, Any] = {
    "flavor": declare(Literal["keras", "torch", "tf1"], "whose defaults and update rule: Keras 3, torch.optim, or "
                   "tf.compat.v1.train"),
    "schedule": declare(str | dict, "a learning-rate schedule: a name or a table (docs/optimizers.md)"),
    "clipvalue": declare(float | None, "clip every gradient element to [-v, v] (Keras)", gt=0),
    "clipnorm": declare(float | None, "clip each weight's gradient to this norm (Keras)", gt=0),
    "global_clipnorm": declare(float | None, "clip all gradients together to this norm (Keras)", gt=0),
    "scale_lr_with_batch": declare(float | None, "the batch size the learning rate is for: lr x batch_size / B "
                                "(Goyal et al. 2017)", gt=0),
    "scale_lr_rule": declare(Literal["linear", "sqrt"], "linear (Goyal et al. 2017) or sqrt (Krizhevsky 2014) "
                          "scaling with scale_lr_with_batch"),
}
