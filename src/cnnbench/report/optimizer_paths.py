"""Optimizer paths on 2-D test surfaces: contour plot (PNG) and animation (GIF).

    paths.draw("rosenbrock", ["sgd", "momentum", "adam"], "out/")  # -> [out/rosenbrock.png, out/rosenbrock.gif]
    cnnbench paths --surface rosenbrock --optimizers sgd,momentum,adam --out out/

The optimizers are the training ones (`cnnbench.optim.get`, Keras flavour by default, schedules and
clipping included), stepping a single 1x2 parameter `[[x, y]]` on the gradient of the surface; a
1x2 matrix is what a weight matrix looks like to LARS, LAMB and Muon (their per-tensor trust ratio
or orthogonalisation applies), and to every other optimizer it is just two numbers.

Each surface has a start point and, for each optimizer, a default learning rate chosen so that the
picture is informative (`DEFAULT_LRS`; found by `tune_lr`, which the optimizers missing from the
table fall back to): the best final value of the surface among learning rates 1e-4 ... 10 whose path
stays finite and inside the plotted box.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError, did_you_mean
from ..registry import split_spec


@dataclass(frozen=True)
class Surface:
    name: str
    f: Callable[[Any, Any], Any]  # works on floats, numpy arrays and torch tensors
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    log_levels: bool


SURFACES: dict[str, Surface] = {
    # x^2 - y^2, saddle point at the origin; start just off the ridge
    "saddle": Surface("saddle", lambda x, y: x**2 - y**2, (-1.0, 0.001), (-1.5, 1.5), (-1.5, 1.5), (),
                      False),
    # Rosenbrock 1960, (1-x)^2 + 100 (y-x^2)^2, minimum (1, 1) in a curved valley
    "rosenbrock": Surface("rosenbrock", lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (-1.2, 1.0),
                          (-2.0, 2.0), (-1.0, 3.0), ((1.0, 1.0),), True),
    # Beale 1958, minimum (3, 0.5), flat plateaus and steep walls
    "beale": Surface("beale", lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
                     + (2.625 - x + x * y**3) ** 2, (1.0, 1.5), (-4.5, 4.5), (-4.5, 4.5), ((3.0, 0.5),), True),
    # Himmelblau 1972, four minima
    "himmelblau": Surface("himmelblau", lambda x, y: (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2, (0.0, 0.0),
                          (-5.0, 5.0), (-5.0, 5.0),
                          ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)),
                          True),
}

DEFAULT_STEPS = 300
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
LR_GRID = (*(float(f"{m}e{e}") for e in range(-4, 1) for m in (1, 2, 5)), 10.0)

# Default learning rate per surface and optimizer (Keras flavour, DEFAULT_STEPS steps), from
# `tune_lr` over LR_GRID; optimizers not listed are tuned on the fly.
DEFAULT_LRS: dict[str, dict[str, float]] = {
    'saddle': {
        'adabelief': 0.0002, 'adabound': 0.0001, 'adadelta': 0.02, 'adagrad': 0.02, 'adam': 0.002,
        'adamax': 0.005, 'adamw': 0.002, 'amsbound': 0.0001, 'amsgrad': 0.002, 'ftrl': 0.02, 'lamb': 0.005,
        'lars': 2.0, 'lion': 0.002, 'lookahead_momentum': 0.002, 'lookahead_radam': 0.02, 'momentum': 0.001,
        'muon': 0.01, 'nadam': 0.002, 'nesterov': 0.001, 'radam': 0.01, 'rmsprop': 0.002,
        'schedule_free_adamw': 0.005, 'sgd': 0.01,
    },
    'rosenbrock': {
        'adabelief': 1.0, 'adabound': 0.5, 'adadelta': 10.0, 'adagrad': 1.0, 'adam': 0.5, 'adamax': 1.0,
        'adamw': 0.5, 'amsbound': 0.5, 'amsgrad': 0.5, 'ftrl': 1.0, 'lamb': 0.5, 'lars': 5.0, 'lion': 0.01,
        'lookahead_momentum': 0.002, 'lookahead_radam': 0.005, 'momentum': 0.002, 'muon': 0.02, 'nadam': 1.0,
        'nesterov': 0.001, 'radam': 0.001, 'rmsprop': 0.02, 'schedule_free_adamw': 0.5, 'sgd': 0.005,
    },
    'beale': {
        'adabelief': 0.5, 'adabound': 0.5, 'adadelta': 10.0, 'adagrad': 2.0, 'adam': 0.5, 'adamax': 1.0,
        'adamw': 0.5, 'amsbound': 0.5, 'amsgrad': 0.5, 'ftrl': 2.0, 'lamb': 0.01, 'lars': 5.0, 'lion': 0.05,
        'lookahead_momentum': 0.01, 'lookahead_radam': 0.02, 'momentum': 0.005, 'muon': 0.05, 'nadam': 0.5,
        'nesterov': 0.005, 'radam': 0.01, 'rmsprop': 0.02, 'schedule_free_adamw': 2.0, 'sgd': 0.02,
    },
    'himmelblau': {
        'adabelief': 0.5, 'adabound': 1.0, 'adadelta': 10.0, 'adagrad': 0.5, 'adam': 0.2, 'adamax': 2.0,
        'adamw': 1.0, 'amsbound': 0.1, 'amsgrad': 2.0, 'ftrl': 0.5, 'lamb': 0.05, 'lars': 0.01, 'lion': 0.02,
        'lookahead_momentum': 0.0005, 'lookahead_radam': 0.05, 'momentum': 0.02, 'muon': 0.1, 'nadam': 0.05,
        'nesterov': 0.0005, 'radam': 0.05, 'rmsprop': 0.02, 'schedule_free_adamw': 0.5, 'sgd': 0.002,
    },
}


def _surface(name: str) -> Surface:
    key = name.lower().strip()
    if key not in SURFACES:
        hint = did_you_mean(key, list(SURFACES))
        raise UserError(f"unknown surface {name!r}; {hint}choose one of: {', '.join(SURFACES)}")
    return SURFACES[key]


def _label(spec) -> str:
    name, options = split_spec(spec)
    return name if not options else name + "(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"


def trajectory(surface: str | Surface, spec, *, steps: int = DEFAULT_STEPS, learning_rate: float | None = None,
               ) -> np.ndarray:
    """The (steps + 1) x 2 path of optimizer `spec` from the surface's start point (float64)."""
    from .. import optim

    s = _surface(surface) if isinstance(surface, str) else surface
    p = torch.tensor([list(s.start)], dtype=torch.float64, requires_grad=True)
    hyper = {} if learning_rate is None else {"learning_rate": float(learning_rate)}
    opt = optim.get(spec, [p], steps_per_epoch=1, epochs=steps, **hyper)
    out = np.empty((steps + 1, 2))
    out[0] = s.start
    for t in range(steps):
        opt.zero_grad()
        s.f(p[0, 0], p[0, 1]).backward()
        opt.step()
        out[t + 1] = p.detach().numpy()[0]
        if not np.isfinite(out[t + 1]).all():
            out[t + 1:] = np.nan
            break
    return out


def _inside(s: Surface, path: np.ndarray) -> bool:
    (x0, x1), (y0, y1) = s.xlim, s.ylim
    return bool(np.isfinite(path).all() and (path[:, 0] >= x0).all() and (path[:, 0] <= x1).all()
                and (path[:, 1] >= y0).all() and (path[:, 1] <= y1).all())


def tune_lr(surface: str | Surface, spec, *, steps: int = DEFAULT_STEPS, grid: Sequence[float] = LR_GRID) -> float:
    """The learning rate of `grid` with the lowest final surface value among paths that stay finite and
    inside the plotted box (ties: the smaller rate); the smallest rate when none stays inside."""
    s = _surface(surface) if isinstance(surface, str) else surface
    best, best_value = None, math.inf
    for lr in sorted(grid):
        path = trajectory(s, spec, steps=steps, learning_rate=lr)
        if not _inside(s, path):
            continue
        value = float(s.f(path[-1, 0], path[-1, 1]))
        if value < best_value - 1e-12:
            best, best_value = lr, value
    return best if best is not None else min(grid)


def default_lr(surface: str, spec, *, steps: int = DEFAULT_STEPS) -> float:
    name, options = split_spec(spec)
    from .. import optim

    canonical = optim.REGISTRY.entry(name).name
    table = DEFAULT_LRS.get(_surface(surface).name, {})
    if not options and steps == DEFAULT_STEPS and canonical in table:
        return table[canonical]
    return tune_lr(surface, spec, steps=steps)


def draw(surface: str, optimizers: Sequence, out_dir, steps: int = DEFAULT_STEPS,
         learning_rates: dict[str, float] | Sequence[float] | None = None, *, gif: bool = True,
         frames: int = 60) -> list[Path]:
    """Draw each optimizer's path on the surface's contour plot: `<out_dir>/<surface>.png` and, with
    `gif`, the animation `<out_dir>/<surface>.gif`. `optimizers`: names or specs; `learning_rates`:
    one per optimizer (a list, or a dict by label/name), default `default_lr`. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = _surface(surface)
    if not optimizers:
        raise UserError("give at least one optimizer to draw")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    labels = [_label(o) for o in optimizers]
    if learning_rates is None:
        lrs = [default_lr(s.name, o, steps=steps) for o in optimizers]
    elif isinstance(learning_rates, dict):
        lrs = [learning_rates.get(lab, learning_rates.get(split_spec(o)[0])) for lab, o in zip(labels, optimizers)]
        lrs = [lr if lr is not None else default_lr(s.name, o, steps=steps) for lr, o in zip(lrs, optimizers)]
    else:
        if len(learning_rates) != len(optimizers):
            raise UserError(f"{len(learning_rates)} learning rates for {len(optimizers)} optimizers")
        lrs = [float(lr) for lr in learning_rates]
    paths = [trajectory(s, o, steps=steps, learning_rate=lr) for o, lr in zip(optimizers, lrs)]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    xs = np.linspace(*s.xlim, 300)
    ys = np.linspace(*s.ylim, 300)
    X, Y = np.meshgrid(xs, ys)
    Z = s.f(X, Y)
    if s.log_levels:
        levels = np.logspace(math.log10(max(Z.min(), 1e-3)), math.log10(Z.max()), 30)
        ax.contourf(X, Y, Z, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="viridis", alpha=0.35)
        ax.contour(X, Y, Z, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="viridis", linewidths=0.6)
    else:
        ax.contourf(X, Y, Z, levels=30, cmap="viridis", alpha=0.35)
        ax.contour(X, Y, Z, levels=30, cmap="viridis", linewidths=0.6)
    for m in s.minima:
        ax.plot(*m, marker="*", color="black", markersize=14, linestyle="none")
    ax.plot(*s.start, marker="o", color="black", markersize=6)
    ax.set_xlim(*s.xlim)
    ax.set_ylim(*s.ylim)
    ax.set_title(f"{s.name}: {steps} steps")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = []
    for i, (lab, lr, path) in enumerate(zip(labels, lrs, paths)):
        final = s.f(*path[-1]) if np.isfinite(path[-1]).all() else float("nan")
        (line,) = ax.plot(path[:, 0], path[:, 1], "-", color=colors[i % len(colors)], linewidth=1.6,
                          label=f"{lab} (lr={lr:g}) f={final:.3g}")
        (head,) = ax.plot([path[-1, 0]], [path[-1, 1]], "o", color=colors[i % len(colors)], markersize=5)
        lines.append((line, head, path))
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    files = [out / f"{s.name}.png"]
    fig.savefig(files[0])

    if gif:
        from PIL import Image

        images = []
        for k in np.unique(np.linspace(0, steps, min(frames, steps + 1)).round().astype(int)):
            for line, head, path in lines:
                line.set_data(path[: k + 1, 0], path[: k + 1, 1])
                head.set_data([path[k, 0]], [path[k, 1]])
            ax.set_title(f"{s.name}: step {k}/{steps}")
            fig.canvas.draw()
            rgba = np.asarray(fig.canvas.buffer_rgba())
            images.append(Image.fromarray(rgba[..., :3].copy()).quantize(colors=128))
        images += [images[-1]] * 10  # hold the last frame
        files.append(out / f"{s.name}.gif")
        images[0].save(files[1], save_all=True, append_images=images[1:], duration=60, loop=0)
    plt.close(fig)
    return files


# --- CLI -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--surface", default="rosenbrock",
                        help=f"surface, or 'all': {', '.join(SURFACES)} (default rosenbrock)")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                        help="comma-separated optimizer names (default %(default)s)")
    parser.add_argument("-o", "--output", "--out", dest="out", default="paths", help="output folder (default ./paths)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps (default %(default)s)")
    parser.add_argument("--lr", default=None,
                        help="learning rates: one number for all, or name=value,... (default: per surface)")
    parser.add_argument("--no-gif", action="store_true", help="write only the PNG")


def _parse_lrs(text: str | None, names: list[str]):
    if not text:
        return None
    try:
        if "=" not in text:
            return [float(text)] * len(names)
        out = {}
        for item in text.split(","):
            key, value = item.split("=", 1)
            out[key.strip()] = float(value)
        return out
    except ValueError as e:
        raise UserError(f"--lr must be a number or name=value,...; got {text!r}") from e


def main(args) -> int:
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    surfaces = list(SURFACES) if args.surface.lower() == "all" else [args.surface]
    lrs = _parse_lrs(args.lr, names)
    for surface in surfaces:
        for f in draw(surface, names, args.out, steps=args.steps, learning_rates=lrs, gif=not args.no_gif):
            print(f)
    return 0
