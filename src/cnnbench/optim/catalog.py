"""The optimizers: for each name, its flavours, their default hyperparameters and builders.

Hyperparameters are stored under Keras' names (`learning_rate`, `beta_1`, `beta_2`, `epsilon`,
`rho`, ...) whatever the flavour; torch's names (`lr`, `betas`, `eps`, `alpha` for RMSprop) are
accepted as aliases. `flavor="keras"` is Keras 3's update rule and defaults (keras_rules.py);
`flavor="torch"` is torch.optim's class and defaults, or pytorch-optimizer's where torch.optim has
none. Optimizers that Keras lacks have only the torch flavour; Ftrl has only the Keras one.
`flavor="tf1"` is the `tf.compat.v1.train` optimizer's signature and update rule (tf1_rules.py), for
the six whose TF 1.x defaults or rules differ from Keras 3: sgd, momentum, nesterov (all three
MomentumOptimizer / GradientDescentOptimizer), rmsprop, adam, adagrad, adadelta. An argument TF 1.x
requires (`learning_rate` of GradientDescent, Momentum, RMSProp and Adagrad) has the default
`REQUIRED` (None): `resolve` keeps it, `get` refuses to build without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from . import keras_rules as K
from . import tf1_rules as T1

#: The default of an argument the tf.compat.v1.train class requires (it has no default there).
REQUIRED = None


@dataclass
class Flavor:
    defaults: dict[str, Any]
    build: Callable[[list, dict[str, Any]], torch.optim.Optimizer]
    implementation: str  # where the update rule comes from (for the docs and `cnnbench list`)


@dataclass
class Spec:
    name: str
    summary: str  # names the reference paper
    flavors: dict[str, Flavor]
    aliases: tuple[str, ...] = ()
    hyper_aliases: dict[str, str] = field(default_factory=dict)  # entry-specific torch -> canonical names

    @property
    def default_flavor(self) -> str:
        return "keras" if "keras" in self.flavors else next(iter(self.flavors))


SPECS: dict[str, Spec] = {}


def _add(spec: Spec) -> None:
    SPECS[spec.name] = spec


def _betas(o):
    return (o["beta_1"], o["beta_2"])


def _po():
    import pytorch_optimizer

    return pytorch_optimizer


# --- SGD family ----------------------------------------------------------------------------------
def _keras_sgd(params, o):
    return K.SGD(params, lr=o["learning_rate"], momentum=o["momentum"], nesterov=o["nesterov"],
                 weight_decay=o["weight_decay"])


def _tf1_momentum(params, o):
    return T1.Momentum(params, lr=o["learning_rate"], momentum=o["momentum"], nesterov=o["nesterov"])


def _torch_sgd(params, o):
    return torch.optim.SGD(params, lr=o["learning_rate"], momentum=o["momentum"], dampening=o["dampening"],
                           weight_decay=o["weight_decay"], nesterov=o["nesterov"])


for _name, _mom, _nest, _summary, _aliases in [
    ("sgd", 0.0, False, "Stochastic gradient descent (Robbins & Monro 1951, 'A stochastic approximation method').", ()),
    ("momentum", 0.9, False, "SGD with heavy-ball momentum 0.9 (Polyak 1964, 'Some methods of speeding up the "
     "convergence of iteration methods').", ("sgd_momentum", "heavy_ball")),
    ("nesterov", 0.9, True, "SGD with Nesterov momentum 0.9 (Nesterov 1983; Sutskever et al. 2013, 'On the "
     "importance of initialization and momentum in deep learning').", ("nag", "sgd_nesterov")),
]:
    _add(Spec(_name, _summary, aliases=_aliases, flavors={
        "keras": Flavor(dict(learning_rate=0.01, momentum=_mom, nesterov=_nest, weight_decay=0.0), _keras_sgd,
                        "keras.optimizers.SGD rule"),
        "torch": Flavor(dict(learning_rate=0.001, momentum=_mom, nesterov=_nest, dampening=0.0, weight_decay=0.0),
                        _torch_sgd, "torch.optim.SGD"),
        # TF 1.x requires learning_rate (and MomentumOptimizer's momentum: cnnbench's entry fixes it).
        "tf1": Flavor(dict(learning_rate=REQUIRED, momentum=_mom, nesterov=_nest), _tf1_momentum,
                      "tf.compat.v1.train.GradientDescentOptimizer" if _name == "sgd" else
                      "tf.compat.v1.train.MomentumOptimizer" + (" (use_nesterov=True)" if _nest else "")
                      + " rule (the accumulator holds gradients: a = mu*a + g; w -= lr*a)"),
    }))

# --- RMSprop -------------------------------------------------------------------------------------
_add(Spec("rmsprop", "RMSprop (Tieleman & Hinton 2012, Coursera 'Neural networks for machine learning', "
          "lecture 6.5); centered variant from Graves 2013.", hyper_aliases={"alpha": "rho"}, flavors={
    "keras": Flavor(dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0),
                    lambda p, o: K.RMSprop(p, lr=o["learning_rate"], rho=o["rho"], momentum=o["momentum"],
                                           eps=o["epsilon"], centered=o["centered"], weight_decay=o["weight_decay"]),
                    "keras.optimizers.RMSprop rule (epsilon inside the square root)"),
    "torch": Flavor(dict(learning_rate=0.01, rho=0.99, momentum=0.0, epsilon=1e-8, centered=False, weight_decay=0.0),
                    lambda p, o: torch.optim.RMSprop(p, lr=o["learning_rate"], alpha=o["rho"], eps=o["epsilon"],
                                                     weight_decay=o["weight_decay"], momentum=o["momentum"],
                                                     centered=o["centered"]),
                    "torch.optim.RMSprop (epsilon outside the square root)"),
    "tf1": Flavor(dict(learning_rate=REQUIRED, rho=0.9, momentum=0.0, epsilon=1e-10, centered=False),
                  lambda p, o: T1.RMSProp(p, lr=o["learning_rate"], rho=o["rho"], momentum=o["momentum"],
                                          eps=o["epsilon"], centered=o["centered"]),
                  "tf.compat.v1.train.RMSPropOptimizer rule (decay = rho; mean square starts at 1, "
                  "epsilon inside the square root)"),
}))


# --- Adam family ---------------------------------------------------------------------------------
def _adam_flavors(keras_cls, torch_cls, keras_wd, torch_wd, amsgrad):
    return {
        "keras": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=amsgrad,
                             weight_decay=keras_wd),
                        lambda p, o: keras_cls(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                               amsgrad=o["amsgrad"], weight_decay=o["weight_decay"]),
                        f"keras.optimizers.{keras_cls.__name__} rule (epsilon-hat form)"),
        "torch": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=amsgrad,
                             weight_decay=torch_wd),
                        lambda p, o: torch_cls(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                               amsgrad=o["amsgrad"], weight_decay=o["weight_decay"]),
                        f"torch.optim.{torch_cls.__name__}"),
    }


_add(Spec("adam", "Adam (Kingma & Ba 2015, 'Adam: a method for stochastic optimization'); amsgrad=True is "
          "AMSGrad (Reddi, Kale & Kumar 2018).", flavors={
    **_adam_flavors(K.Adam, torch.optim.Adam, 0.0, 0.0, False),
    # ApplyAdam is Keras' epsilon-hat form; only epsilon's default differs (and TF 1.x has no amsgrad).
    "tf1": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  lambda p, o: K.Adam(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"]),
                  "tf.compat.v1.train.AdamOptimizer rule (epsilon-hat form, as Keras)"),
}))
_add(Spec("amsgrad", "AMSGrad: Adam with the running maximum of the second moment (Reddi, Kale & Kumar 2018, "
          "'On the convergence of Adam and beyond').",
          flavors=_adam_flavors(K.Adam, torch.optim.Adam, 0.0, 0.0, True)))
_add(Spec("adamw", "AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, 'Decoupled weight decay "
          "regularization').", flavors=_adam_flavors(K.AdamW, torch.optim.AdamW, 0.004, 0.01, False)))

_add(Spec("adamax", "Adamax: Adam with the infinity norm (Kingma & Ba 2015, section 7.1).", flavors={
    "keras": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0),
                    lambda p, o: K.Adamax(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                          weight_decay=o["weight_decay"]),
                    "keras.optimizers.Adamax rule"),
    "torch": Flavor(dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0),
                    lambda p, o: torch.optim.Adamax(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                                    weight_decay=o["weight_decay"]),
                    "torch.optim.Adamax"),
}))
_add(Spec("nadam", "Nadam: Adam with Nesterov momentum (Dozat 2016, 'Incorporating Nesterov momentum into Adam').",
          flavors={
    "keras": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0),
                    lambda p, o: K.Nadam(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                         weight_decay=o["weight_decay"]),
                    "keras.optimizers.Nadam rule (momentum schedule 0.96^t)"),
    "torch": Flavor(dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                         momentum_decay=0.004, decoupled_weight_decay=False),
                    lambda p, o: torch.optim.NAdam(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                                   weight_decay=o["weight_decay"],
                                                   momentum_decay=o["momentum_decay"],
                                                   decoupled_weight_decay=o["decoupled_weight_decay"]),
                    "torch.optim.NAdam (momentum schedule 0.96^(t*momentum_decay))"),
}))
_add(Spec("radam", "RAdam: rectified Adam (Liu et al. 2020, 'On the variance of the adaptive learning rate and "
          "beyond').", flavors={
    "torch": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                         decoupled_weight_decay=False),
                    lambda p, o: torch.optim.RAdam(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                                   weight_decay=o["weight_decay"],
                                                   decoupled_weight_decay=o["decoupled_weight_decay"]),
                    "torch.optim.RAdam"),
}))

# --- Adagrad / Adadelta --------------------------------------------------------------------------
_add(Spec("adagrad", "Adagrad (Duchi, Hazan & Singer 2011, 'Adaptive subgradient methods for online learning and "
          "stochastic optimization').", flavors={
    "keras": Flavor(dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=0.0),
                    lambda p, o: K.Adagrad(p, lr=o["learning_rate"],
                                           initial_accumulator_value=o["initial_accumulator_value"],
                                           eps=o["epsilon"], weight_decay=o["weight_decay"]),
                    "keras.optimizers.Adagrad rule (epsilon inside the square root)"),
    "torch": Flavor(dict(learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-10, weight_decay=0.0,
                         lr_decay=0.0),
                    lambda p, o: torch.optim.Adagrad(p, lr=o["learning_rate"], lr_decay=o["lr_decay"],
                                                     weight_decay=o["weight_decay"],
                                                     initial_accumulator_value=o["initial_accumulator_value"],
                                                     eps=o["epsilon"]),
                    "torch.optim.Adagrad (epsilon outside the square root)"),
    "tf1": Flavor(dict(learning_rate=REQUIRED, initial_accumulator_value=0.1),
                  lambda p, o: T1.Adagrad(p, lr=o["learning_rate"],
                                          initial_accumulator_value=o["initial_accumulator_value"]),
                  "tf.compat.v1.train.AdagradOptimizer rule (no epsilon: lr*g/sqrt(acc))"),
}))
_add(Spec("adadelta", "Adadelta (Zeiler 2012, 'ADADELTA: an adaptive learning rate method').", flavors={
    "keras": Flavor(dict(learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=0.0),
                    lambda p, o: K.Adadelta(p, lr=o["learning_rate"], rho=o["rho"], eps=o["epsilon"],
                                            weight_decay=o["weight_decay"]),
                    "keras.optimizers.Adadelta rule"),
    "torch": Flavor(dict(learning_rate=1.0, rho=0.9, epsilon=1e-6, weight_decay=0.0),
                    lambda p, o: torch.optim.Adadelta(p, lr=o["learning_rate"], rho=o["rho"], eps=o["epsilon"],
                                                      weight_decay=o["weight_decay"]),
                    "torch.optim.Adadelta"),
    "tf1": Flavor(dict(learning_rate=0.001, rho=0.95, epsilon=1e-8),
                  lambda p, o: K.Adadelta(p, lr=o["learning_rate"], rho=o["rho"], eps=o["epsilon"]),
                  "tf.compat.v1.train.AdadeltaOptimizer rule (the Keras rule with epsilon 1e-8)"),
}))

# --- Lion, LAMB, LARS, FTRL ----------------------------------------------------------------------
_add(Spec("lion", "Lion: evolved sign momentum (Chen et al. 2023, 'Symbolic discovery of optimization "
          "algorithms').", flavors={
    "keras": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=0.0),
                    lambda p, o: K.Lion(p, lr=o["learning_rate"], betas=_betas(o), weight_decay=o["weight_decay"]),
                    "keras.optimizers.Lion rule"),
    "torch": Flavor(dict(learning_rate=1e-4, beta_1=0.9, beta_2=0.99, weight_decay=0.0),
                    lambda p, o: _po().Lion(p, lr=o["learning_rate"], betas=_betas(o),
                                            weight_decay=o["weight_decay"]),
                    "pytorch_optimizer.Lion (torch.optim has none)"),
}))
_add(Spec("lamb", "LAMB: layer-wise adaptive moments (You et al. 2020, 'Large batch optimization for deep "
          "learning: training BERT in 76 minutes').", flavors={
    "keras": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0),
                    lambda p, o: K.Lamb(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                        weight_decay=o["weight_decay"]),
                    "keras.optimizers.Lamb rule"),
    "torch": Flavor(dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.0,
                         weight_decouple=True),
                    lambda p, o: _po().Lamb(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                            weight_decay=o["weight_decay"], weight_decouple=o["weight_decouple"]),
                    "pytorch_optimizer.Lamb (torch.optim has none)"),
}))
_add(Spec("lars", "LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, 'Large batch training of "
          "convolutional networks'); 1-D parameters (biases, norm scales) get plain momentum SGD without "
          "trust ratio or weight decay.", flavors={
    "torch": Flavor(dict(learning_rate=0.001, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001,
                         nesterov=False, dampening=0.0),
                    lambda p, o: _po().LARS(p, lr=o["learning_rate"], weight_decay=o["weight_decay"],
                                            momentum=o["momentum"], dampening=o["dampening"],
                                            trust_coefficient=o["trust_coefficient"], nesterov=o["nesterov"]),
                    "pytorch_optimizer.LARS (torch.optim has none)"),
}))
_add(Spec("ftrl", "FTRL-Proximal (McMahan et al. 2013, 'Ad click prediction: a view from the trenches').", flavors={
    "keras": Flavor(dict(learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                         l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                         l2_shrinkage_regularization_strength=0.0, beta=0.0, weight_decay=0.0),
                    lambda p, o: K.Ftrl(p, lr=o["learning_rate"], **{k: v for k, v in o.items()
                                                                      if k != "learning_rate"}),
                    "keras.optimizers.Ftrl rule (neither torch.optim nor pytorch-optimizer has FTRL)"),
}))


# --- Crowded Valley (Schmidt, Schneider & Hennig 2021) additions and modern optimizers -----------
def _adabound(ams_bound):
    return Flavor(dict(learning_rate=0.001, final_lr=0.1, beta_1=0.9, beta_2=0.999, gamma=0.001, epsilon=1e-8,
                       weight_decay=0.0, weight_decouple=True),
                  lambda p, o: _po().AdaBound(p, lr=o["learning_rate"], final_lr=o["final_lr"], betas=_betas(o),
                                              gamma=o["gamma"], weight_decay=o["weight_decay"],
                                              weight_decouple=o["weight_decouple"], ams_bound=ams_bound,
                                              eps=o["epsilon"]),
                  "pytorch_optimizer.AdaBound" + (" (ams_bound=True)" if ams_bound else ""))


_add(Spec("adabound", "AdaBound: Adam with dynamic bounds converging to SGD (Luo et al. 2019, 'Adaptive gradient "
          "methods with dynamic bound of learning rate').", flavors={"torch": _adabound(False)}))
_add(Spec("amsbound", "AMSBound: AMSGrad with dynamic bounds (Luo et al. 2019, 'Adaptive gradient methods with "
          "dynamic bound of learning rate').", flavors={"torch": _adabound(True)}))
_add(Spec("adabelief", "AdaBelief: adapting stepsizes by the belief in observed gradients (Zhuang et al. 2020).",
          flavors={"torch": Flavor(
              dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-16, weight_decay=0.0,
                   weight_decouple=True, rectify=False, amsgrad=False),
              lambda p, o: _po().AdaBelief(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                           weight_decay=o["weight_decay"], weight_decouple=o["weight_decouple"],
                                           rectify=o["rectify"], ams_bound=o["amsgrad"]),
              "pytorch_optimizer.AdaBelief")}))


def _lookahead(inner):
    def build(p, o):
        inner_opts = {k: v for k, v in o.items() if k not in ("k", "lookahead_alpha")}
        return _po().Lookahead(inner(p, inner_opts), k=o["k"], alpha=o["lookahead_alpha"])
    return build


_add(Spec("lookahead_momentum", "Lookahead (k=5, alpha=0.5) around SGD with momentum 0.9 (Zhang, Lucas, Hinton & "
          "Ba 2019, 'Lookahead optimizer: k steps forward, 1 step back').", aliases=("la_momentum",),
          hyper_aliases={"alpha": "lookahead_alpha"},
          flavors={"torch": Flavor(
              dict(learning_rate=0.001, momentum=0.9, nesterov=False, dampening=0.0, weight_decay=0.0,
                   k=5, lookahead_alpha=0.5),
              _lookahead(_torch_sgd), "pytorch_optimizer.Lookahead around torch.optim.SGD")}))
_add(Spec("lookahead_radam", "Lookahead (k=5, alpha=0.5) around RAdam (Zhang et al. 2019; Liu et al. 2020).",
          aliases=("la_radam",), hyper_aliases={"alpha": "lookahead_alpha"}, flavors={"torch": Flavor(
              dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                   decoupled_weight_decay=False, k=5, lookahead_alpha=0.5),
              _lookahead(SPECS["radam"].flavors["torch"].build),
              "pytorch_optimizer.Lookahead around torch.optim.RAdam")}))
_add(Spec("schedule_free_adamw", "Schedule-Free AdamW (Defazio et al. 2024, 'The road less scheduled'); call "
          "optim.eval_mode/train_mode around evaluation.", aliases=("schedulefree_adamw", "sf_adamw"),
          flavors={"torch": Flavor(
              dict(learning_rate=0.0025, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                   warmup_steps=0, r=0.0, weight_lr_power=2.0),
              lambda p, o: _po().ScheduleFreeAdamW(p, lr=o["learning_rate"], betas=_betas(o), eps=o["epsilon"],
                                                   weight_decay=o["weight_decay"], warmup_steps=o["warmup_steps"],
                                                   r=o["r"], weight_lr_power=o["weight_lr_power"]),
              "pytorch_optimizer.ScheduleFreeAdamW")}))


def _muon_groups(params: list) -> list[dict]:
    if params and isinstance(params[0], dict):
        groups = []
        for g in params:
            ps = list(g["params"])
            rest = {k: v for k, v in g.items() if k != "params"}
            groups += [{**rest, "params": [p for p in ps if p.ndim >= 2], "use_muon": True},
                       {**rest, "params": [p for p in ps if p.ndim < 2], "use_muon": False}]
        return [g for g in groups if g["params"]]
    groups = [{"params": [p for p in params if p.ndim >= 2], "use_muon": True},
              {"params": [p for p in params if p.ndim < 2], "use_muon": False}]
    return [g for g in groups if g["params"]]


_add(Spec("muon", "Muon: momentum orthogonalized by Newton-Schulz for >=2-D weights, AdamW for the rest (Jordan "
          "et al. 2024, 'Muon: an optimizer for hidden layers in neural networks'; Liu et al. 2025, 'Muon is "
          "scalable for LLM training').", flavors={"torch": Flavor(
              dict(learning_rate=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5,
                   adamw_lr=3e-4, adamw_beta_1=0.9, adamw_beta_2=0.95, adamw_epsilon=1e-10, adamw_wd=0.0),
              lambda p, o: _po().Muon(_muon_groups(p), lr=o["learning_rate"], momentum=o["momentum"],
                                      nesterov=o["nesterov"], weight_decay=o["weight_decay"], ns_steps=o["ns_steps"],
                                      adamw_lr=o["adamw_lr"], adamw_betas=(o["adamw_beta_1"], o["adamw_beta_2"]),
                                      adamw_eps=o["adamw_epsilon"], adamw_wd=o["adamw_wd"]),
              "pytorch_optimizer.Muon (torch.optim.Muon takes only 2-D parameters)")}))
