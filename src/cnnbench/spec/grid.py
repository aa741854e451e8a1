"""The grid of runs: written values expanded into runs (explicit runs × grid axes × seeds), each
keyed by the SHA-256 of its resolved config's canonical JSON, and the study that holds them."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from .families import family
from .schema import RUN_DEFAULTS, RUN_KEYS, StudyMeta

# a run key -> (its written value, its place in the file)
Written = dict[str, tuple[Any, str]]


def canonical(value: Any) -> str:
    """Sorted, compact JSON: equal configs give equal strings (and keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    key: str
    label: str  # the configuration without the seed, e.g. "loss=mse · optimizer=adam"
    axes: dict[str, str]  # the study's varying keys -> this run's value, for marginal rankings
    config: dict[str, Any]  # fully resolved; what the key hashes
    role: str = "final"  # "final": ranked; "tuning": a learning-rate search run

    @property
    def seed(self) -> int:
        return self.config["seed"]


@dataclass
class StudySpec:
    """A parsed, validated study file: its settings and its resolved runs. (`cnnbench.Study`, in
    api.py, is the Python API that wraps one.)"""

    meta: StudyMeta
    runs: list[Run]  # with [tuning]: the search runs; the final runs follow from its results
    source: str
    text: str  # the spec file as written (kept in the study directory)
    # the metrics this study knows: the built-ins, its custom metrics and its outputs' scores
    metrics: metrics.Catalog = field(default_factory=metrics.Catalog)

    @property
    def name(self) -> str:
        return self.meta.name

    def final_runs(self, chosen: dict[str, float]) -> list[Run]:
        """With [tuning]: each configuration at its chosen learning rate, with all the study's seeds."""
        out, seen = [], set()
        for run in self.runs:
            if run.label in chosen and run.label not in seen:
                seen.add(run.label)
                base = with_learning_rate(run.config, chosen[run.label])
                for seed in self.meta.seeds:
                    cfg = {**base, "seed": seed}
                    out.append(Run(run_key(cfg), run.label, run.axes, cfg, "final"))
        return out


def with_learning_rate(config: dict[str, Any], lr: float) -> dict[str, Any]:
    spec = {k: v for k, v in config["optimizer"].items() if k not in ("lr", "learning_rate")}
    return {**config, "optimizer": family("optim").resolve({**spec, "learning_rate": lr})}


def combinations(defaults: Written, axes: list[list[tuple[str, Any, str]]], explicit: list[Written]) -> list[Written]:
    """Explicit runs × grid, later sources overriding earlier ones: defaults, then the run, then the axes."""
    combos = []
    for entry in explicit:
        for choice in itertools.product(*axes):
            written = dict(defaults)
            written.update(entry)
            written.update({k: (v, path) for k, v, path in choice})
            combos.append(written)
    return combos


def varying_keys(combos: list[Written]) -> list[str]:
    """The run keys whose written value differs between runs: the study's axes."""
    return [k for k in RUN_KEYS if len({canonical(c[k][0]) if k in c else None for c in combos}) > 1]


def axes_display(written: Written, varying: list[str]) -> dict[str, str]:
    return {k: display(written[k][0]) if k in written else display(getattr(RUN_DEFAULTS, k)) for k in varying}


def display(value: Any) -> str:
    """How a written value shows in labels: `adam`, `sgd(learning_rate=0.01)`, `epochs=5`."""
    if isinstance(value, dict) and "name" in value:
        opts = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value['name']}({opts})" if opts else str(value["name"])
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)
