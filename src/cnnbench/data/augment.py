"""Batched, reproducible data augmentation (the Keras `ImageDataGenerator` options, plus crop/cutout).

    aug = augment.get({"horizontal_flip": True, "rotation_range": 15})   # None when nothing is on
    xb = aug(xb, generator)          # xb: float N×C×H×W in 0..1, on any device

Everything runs on whole batches on the batch's device: the per-sample random parameters are drawn
from the `torch.Generator` passed in (same generator state -> same batch), rotation / shift / zoom /
shear (and the flips, when a geometric transform is on) are combined into one affine matrix per sample
and applied with a single `F.affine_grid` + `F.grid_sample`; flips, crops, brightness, channel shift and
cutout are masks / gathers / broadcasts. No Python loop over samples.

Options (Keras names and meanings; ranges are symmetric and drawn uniformly per sample):
- `horizontal_flip`, `vertical_flip` (bool): flip with probability 0.5.
- `rotation_range` (degrees): rotate by U(-r, r).
- `width_shift_range`, `height_shift_range`, as Keras: a float s shifts by U(-s, s) × width/height
  (s < 1) or U(-s, s) pixels (s >= 1); an integer s by a whole number of pixels, ±{0, ..., s - 1}; a list
  by ± one of its values (pixels, or fractions when all are below 1). With a rotation, the shift turns
  with the image (Keras' matrix is rotation · shift · shear · zoom).
- `zoom_range`: float z -> [1 - z, 1 + z], or [lower, upper]; x and y zoom drawn independently as in
  Keras (> 1 zooms out).
- `shear_range` (degrees): shear angle U(-s, s).
- `fill_mode`: "nearest" (Keras default), "constant" (with `cval`) or "reflect", for points outside. As in
  Keras (scipy's `affine_transform`, order 1), "constant" gives exactly `cval` beyond the outer pixel
  centres and interpolates only between pixels inside.
- `brightness_range`: [lower, upper] multiplies the image by U(lower, upper) (then clamps to 0..1).
- `channel_shift_range`: adds U(-r, r) / 255 to the image (Keras units: 0..255 intensities), clipped to
  the image's own min..max as Keras' `apply_channel_shift` does.
- `crop_padding` (pixels p): random crop after zero-padding by p on every side (the CIFAR recipe):
  an integer shift in [-p, p] in both directions with zero fill.
- `cutout_size` (pixels s): zero one s×s square per image, centre uniform over the image (clipped at
  the borders; DeVries & Taylor 2017).
Order: affine (with flips) -> crop -> channel shift -> brightness -> cutout (Keras: affine, channel
shift, flips, brightness).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import UserError, did_you_mean
from ..registry import Declared, Registry, declare

DEFAULTS: dict[str, Any] = {
    "horizontal_flip": False,
    "vertical_flip": False,
    "rotation_range": 0.0,
    "width_shift_range": 0.0,
    "height_shift_range": 0.0,
    "zoom_range": [1.0, 1.0],
    "shear_range": 0.0,
    "fill_mode": "nearest",
    "cval": 0.0,
    "brightness_range": None,
    "channel_shift_range": 0.0,
    "crop_padding": 0,
    "cutout_size": 0,
}

FILL_MODES = {"nearest": "border", "constant": "border", "reflect": "reflection"}  # constant: masked after

# Keras ImageDataGenerator arguments that are not augmentations here, with the reason.
_NOT_HERE = {
    "rescale": "images already arrive scaled to 0..1",
    "featurewise_center": "normalisation belongs to the model/engine, not augmentation",
    "samplewise_center": "normalisation belongs to the model/engine, not augmentation",
    "featurewise_std_normalization": "normalisation belongs to the model/engine, not augmentation",
    "samplewise_std_normalization": "normalisation belongs to the model/engine, not augmentation",
    "zca_whitening": "ZCA whitening is not supported",
    "zca_epsilon": "ZCA whitening is not supported",
    "validation_split": "set the validation split on the training run, not on augmentation",
    "preprocessing_function": "custom functions are not supported in a study file",
    "data_format": "batches are always channels-first (N×C×H×W)",
    "dtype": "batches keep their dtype",
    "interpolation_order": "interpolation is always bilinear",
}

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # the usual CIFAR recipe (He et al. 2016): pad 4 + random crop, horizontal flip
    "cifar": {"horizontal_flip": True, "crop_padding": 4},
}



_SHIFT = ("a float s shifts by U(-s, s) x the size (s < 1) or U(-s, s) pixels (s >= 1); an integer s by whole "
          "pixels, ±{0, ..., s - 1}; a list by ± one of its values")

#: Every option, declared once: type, limits and a line of doc (`cnnbench.registry.Option`); `resolve`
#: checks each value against it, and docs/options.md prints it.
OPTIONS: dict[str, Any] = {
    "horizontal_flip": declare(bool, "flip left-right with probability 0.5"),
    "vertical_flip": declare(bool, "flip upside down with probability 0.5"),
    "rotation_range": declare(float, "rotate by U(-r, r) degrees", ge=0),
    "width_shift_range": declare(float | Sequence[float], "horizontal shift: " + _SHIFT, ge=0),
    "height_shift_range": declare(float | Sequence[float], "vertical shift: " + _SHIFT, ge=0),
    "zoom_range": declare(float | Sequence[float], "zoom z: U(1 - z, 1 + z) (z < 1), or [lower, upper] with lower > "
                       "0; x and y drawn apart; > 1 zooms out", ge=0),
    "shear_range": declare(float, "shear angle U(-s, s) degrees", ge=0),
    "fill_mode": declare(Literal["nearest", "constant", "reflect"], "how points outside the image are filled"),
    "cval": declare(float, "the fill value with fill_mode = 'constant'"),
    "brightness_range": declare(Sequence[float] | None, "[lower, upper]: multiply the image by U(lower, upper)", ge=0),
    "channel_shift_range": declare(float, "add U(-r, r) / 255 (Keras' 0..255 units), clipped to the image's range",
                                ge=0),
    "crop_padding": declare(int, "pixels p: random crop after zero-padding by p", ge=0),
    "cutout_size": declare(int, "pixels s: zero one s x s square per image (DeVries & Taylor 2017)", ge=0),
}


def _pair(key: str, value) -> list[float]:
    return [float(v) for v in value]


# --- the registry: a preset is an entry, a table of options the entry "augment" --------------------
REGISTRY = Registry("augmentation")
_DECLARED = {k: Declared.of(k, OPTIONS[k], DEFAULTS[k]) for k in OPTIONS}


def _preset(name: str, summary: str) -> None:
    """Register preset `name`: its options (PRESETS), overridden by those given with it."""
    def factory(**options) -> dict[str, Any]:
        return {**PRESETS[name], **options}
    factory.__name__ = name
    REGISTRY.register(name, summary=summary, options=_DECLARED)(factory)


_preset("none", "nothing on")
_preset("cifar", "the usual CIFAR recipe (He et al. 2016): pad 4 + random crop, horizontal flip")
REGISTRY.register("augment", summary="the options given (a table without a name)", options=_DECLARED)(
    lambda **options: options)


@REGISTRY.rule
def _lower_upper(options: dict[str, Any]) -> str | None:
    """A range written as [lower, upper] has two ends in order."""
    for key in ("zoom_range", "brightness_range"):
        value = options.get(key)
        if isinstance(value, (list, tuple)) and (len(value) != 2 or value[0] > value[1]):
            return f"option {key} must be [lower, upper] with lower <= upper, got {value!r}"
    return None


@REGISTRY.rule
def _zoom_above_zero(options: dict[str, Any]) -> str | None:
    """Zoom factors stay above 0: a float z < 1 (U(1 - z, 1 + z)), or [lower, upper] with lower > 0."""
    value = options.get("zoom_range")
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] <= 0:
        return f"option zoom_range must stay above 0, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
        return f"option zoom_range {value} would zoom by 0 or less; use a value below 1 or [lower, upper]"
    return None


@REGISTRY.rule
def _shift_list_not_empty(options: dict[str, Any]) -> str | None:
    for key in ("width_shift_range", "height_shift_range"):
        if isinstance(options.get(key), (list, tuple)) and not options[key]:
            return f"option {key} must not be an empty list"
    return None


def _canonical(key: str, value):
    """A checked value in its one form (a run's key): zoom as [lower, upper], pixels as ints, numbers as floats."""
    if key in ("horizontal_flip", "vertical_flip", "fill_mode") or value is None:
        return value
    if key == "zoom_range":
        return _pair(key, value) if isinstance(value, (list, tuple)) else [1.0 - value, 1.0 + value]
    if key == "brightness_range":
        return _pair(key, value)
    if key in ("crop_padding", "cutout_size"):
        return int(value)  # declared whole: 4.0 is 4
    if key in ("width_shift_range", "height_shift_range"):  # Keras' three kinds: float, int (whole pixels), list
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        return value if isinstance(value, int) else float(value)
    return float(value)


def _named(spec: dict[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """(entry, options) of a spec: a preset's name, a table of options, or a table with a preset's name."""
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, dict):
        name, options = (str(spec.get("name", "augment")), {k: v for k, v in spec.items() if k != "name"})
    else:
        raise UserError(f"augment must be a table of options (e.g. {{horizontal_flip = true}}), got {spec!r}")
    if name not in REGISTRY:
        presets = [n for n in REGISTRY.list() if n != "augment"]
        hint = did_you_mean(name.lower().replace("-", "_"), presets)
        raise UserError(f"unknown augmentation preset {name!r}; {hint}use one of {', '.join(PRESETS)} "
                        "or a table of options")
    return REGISTRY.entry(name).name, options


def resolve(spec: dict[str, Any] | str | None) -> dict[str, Any]:
    """Every option explicit and canonical (e.g. `zoom_range: 0.1` -> `[0.9, 1.1]`). JSON-safe."""
    name, options = _named({} if spec is None else spec)
    for key in options:
        if key not in DEFAULTS:
            if key in _NOT_HERE:
                raise UserError(f"augment option {key!r} is not available: {_NOT_HERE[key]}")
            hint = did_you_mean(key, list(DEFAULTS))
            raise UserError(f"unknown augment option {key!r}; {hint}allowed: {', '.join(DEFAULTS)}")
    entry = REGISTRY.check_options(name, options)  # the declared types and limits, then the rules
    given = entry.factory(**options)
    return {**DEFAULTS, **{k: _canonical(k, v) for k, v in given.items()}}


class Augment:
    """A resolved augmentation; call it on a float batch with a generator."""

    def __init__(self, spec: dict[str, Any] | str | None = None):
        self.options = resolve(spec)
        o = self.options
        self.geometric = bool(
            o["rotation_range"] or o["width_shift_range"] or o["height_shift_range"] or o["shear_range"]
            or o["zoom_range"] != [1.0, 1.0]
        )

    @property
    def enabled(self) -> bool:
        o = self.options
        return bool(
            self.geometric or o["horizontal_flip"] or o["vertical_flip"] or o["brightness_range"] is not None
            or o["channel_shift_range"] or o["crop_padding"] or o["cutout_size"]
        )

    def __repr__(self) -> str:
        on = {k: v for k, v in self.options.items() if v != DEFAULTS[k]}
        return f"Augment({on})"

    # --- random draws (fixed order, from the caller's generator) ------------------------------
    @staticmethod
    def _uniform(n: int, lo: float, hi: float, generator, device) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * (hi - lo) + lo

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not x.is_floating_point() or x.dim() != 4:
            raise TypeError(f"augment expects a float N×C×H×W batch, got {x.dtype} {tuple(x.shape)}")
        if not self.enabled or x.shape[0] == 0:
            return x
        o = self.options
        n, _c, _h, _w = x.shape
        gdev = generator.device if generator is not None else x.device
        rnd = lambda lo, hi: self._uniform(n, lo, hi, generator, gdev).to(x.device, torch.float32)  # noqa: E731
        flip_x = (rnd(0, 1) < 0.5) if o["horizontal_flip"] else None
        flip_y = (rnd(0, 1) < 0.5) if o["vertical_flip"] else None

        if self.geometric:
            x = self._affine(x, rnd, flip_x, flip_y)
        else:
            if flip_x is not None:
                x = torch.where(flip_x[:, None, None, None], x.flip(-1), x)
            if flip_y is not None:
                x = torch.where(flip_y[:, None, None, None], x.flip(-2), x)

        if o["crop_padding"]:
            x = self._crop(x, o["crop_padding"], rnd)
        if o["channel_shift_range"]:
            # Keras' apply_channel_shift: one intensity for all channels, clipped to the image's own range
            r = o["channel_shift_range"] / 255.0
            lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
            x = torch.minimum(torch.maximum(x + rnd(-r, r).to(x.dtype)[:, None, None, None], lo), hi)
        if o["brightness_range"] is not None:
            lo, hi = o["brightness_range"]
            x = (x * rnd(lo, hi).to(x.dtype)[:, None, None, None]).clamp_(0.0, 1.0)
        if o["cutout_size"]:
            x = self._cutout(x, o["cutout_size"], rnd)
        return x

    def _affine(self, x, rnd, flip_x, flip_y):
        """Draw each sample's rotation, shear, zoom and shift; apply them with the flips in one pass."""
        o = self.options
        n, _c, h, w = x.shape
        zero, one = torch.zeros(n, device=x.device), torch.ones(n, device=x.device)
        theta = rnd(-o["rotation_range"], o["rotation_range"]) if o["rotation_range"] else zero
        shear = rnd(-o["shear_range"], o["shear_range"]) if o["shear_range"] else zero
        zx = rnd(*o["zoom_range"]) if o["zoom_range"] != [1.0, 1.0] else one
        zy = rnd(*o["zoom_range"]) if o["zoom_range"] != [1.0, 1.0] else one
        tx = _draw_shift(o["width_shift_range"], w, rnd, zero)
        ty = _draw_shift(o["height_shift_range"], h, rnd, zero)
        return affine(x, theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy, flip_x=flip_x, flip_y=flip_y,
                      fill_mode=o["fill_mode"], cval=o["cval"])

    @staticmethod
    def _crop(x, p, rnd):
        """Zero-pad by p, then crop H×W at a per-sample random offset (one gather)."""
        n, c, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        oy = torch.floor(rnd(0, 1) * (2 * p + 1)).long().clamp_(max=2 * p)
        ox = torch.floor(rnd(0, 1) * (2 * p + 1)).long().clamp_(max=2 * p)
        rows = (oy[:, None] + torch.arange(h, device=x.device)[None, :])  # N×H
        cols = (ox[:, None] + torch.arange(w, device=x.device)[None, :])  # N×W
        hp, wp = h + 2 * p, w + 2 * p
        flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        return padded.reshape(n, c, hp * wp).gather(2, flat).reshape(n, c, h, w)

    @staticmethod
    def _cutout(x, size, rnd):
        _n, _c, h, w = x.shape
        cy = torch.floor(rnd(0, 1) * h).long()
        cx = torch.floor(rnd(0, 1) * w).long()
        y0, x0 = cy - size // 2, cx - size // 2
        ys = torch.arange(h, device=x.device)[None, :]
        xs = torch.arange(w, device=x.device)[None, :]
        my = (ys >= y0[:, None]) & (ys < (y0 + size)[:, None])
        mx = (xs >= x0[:, None]) & (xs < (x0 + size)[:, None])
        keep = ~(my[:, :, None] & mx[:, None, :])
        return x * keep[:, None, :, :].to(x.dtype)


def _draw_shift(spec, size: int, rnd, zero: torch.Tensor) -> torch.Tensor:
    """Shifts in pixels for one batch, drawn the way Keras' ImageDataGenerator reads the range."""
    if not spec:
        return zero
    if isinstance(spec, float):
        return rnd(-spec, spec) * (size if spec < 1 else 1.0)
    values = list(range(spec)) if isinstance(spec, int) else spec
    scale = size if max(values) < 1 else 1.0  # from the Python values: no device sync
    choices = torch.tensor([v * scale for v in values], dtype=torch.float32, device=zero.device)
    pick = torch.floor(rnd(0, 1) * len(choices)).long().clamp_(max=len(choices) - 1)
    sign = torch.where(rnd(0, 1) < 0.5, -1.0, 1.0)
    return choices[pick] * sign


def affine(x: torch.Tensor, *, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, flip_x=None, flip_y=None,
           fill_mode: str = "nearest", cval: float = 0.0) -> torch.Tensor:
    """Keras' `apply_affine_transform` for a batch: per-sample rotation `theta` and `shear` (degrees),
    shift `tx`, `ty` (pixels, x right / y down), zoom `zx`, `zy` (> 1 zooms out) and flips (bool masks).

    Each argument is a number or one value per sample. Like Keras, the matrix that maps an output pixel
    (centred coordinates) to the input is rotation · shift · shear · zoom, so a shift turns with the
    rotation; a flip mirrors the output. Bilinear interpolation (Keras' default order 1).
    """
    n, _c, h, w = x.shape
    per_sample = lambda v: torch.as_tensor(v, dtype=torch.float32, device=x.device).expand(n)  # noqa: E731
    theta, shear = torch.deg2rad(per_sample(theta)), torch.deg2rad(per_sample(shear))
    tx, ty, zx, zy = per_sample(tx), per_sample(ty), per_sample(zx), per_sample(zy)
    one = torch.ones(n, device=x.device)
    cos, sin = torch.cos(theta), torch.sin(theta)
    r = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    s = torch.stack([torch.stack([one, -torch.sin(shear)], -1), torch.stack([0 * one, torch.cos(shear)], -1)], -2)
    fx = torch.where(flip_x, -one, one) if flip_x is not None else one
    fy = torch.where(flip_y, -one, one) if flip_y is not None else one
    z = torch.diag_embed(torch.stack([zx * fx, zy * fy], -1))
    a = r @ s @ z
    t = (r @ torch.stack([tx, ty], -1)[:, :, None])[:, :, 0]
    # to affine_grid's normalised coordinates (align_corners=False): u = x / (w/2), v = y / (h/2)
    scale = torch.tensor([w / 2.0, h / 2.0], device=x.device)
    a_norm = a * scale[None, None, :] / scale[None, :, None]
    mat = torch.cat([a_norm, (t / scale)[:, :, None]], -1).to(x.dtype)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    if fill_mode not in FILL_MODES:
        raise UserError(f"augment fill_mode {fill_mode!r} is not supported; use one of {', '.join(FILL_MODES)}")
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=FILL_MODES[fill_mode], align_corners=False)
    if fill_mode == "constant":
        # Beyond the outer pixel centres (|u| > 1 - 1/w in normalised units) Keras gives cval itself.
        # A tolerance of 1e-4 pixel keeps an edge pixel that round-off puts a hair outside.
        size = 2 * scale
        outside = (grid.abs() > 1.0 - (1.0 - 2e-4) / size).any(-1)
        out = out.masked_fill(outside[:, None], cval)
    return out


def get(spec: dict[str, Any] | str | Augment | None) -> Augment | None:
    """An `Augment` for the spec, or None when the spec turns nothing on (so callers can skip it)."""
    if spec is None:
        return None
    aug = spec if isinstance(spec, Augment) else Augment(spec)
    return aug if aug.enabled else None
