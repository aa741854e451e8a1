"""cnnbench.data.augment: batched, reproducible augmentation."""

from __future__ import annotations

import pytest
import torch

from cnnbench.data import augment
from cnnbench.errors import UserError

ALL_ON = {
    "horizontal_flip": True, "vertical_flip": True, "rotation_range": 20, "width_shift_range": 0.1,
    "height_shift_range": 0.1, "zoom_range": 0.1, "shear_range": 10, "brightness_range": [0.8, 1.2],
    "channel_shift_range": 10, "crop_padding": 2, "cutout_size": 4,
}


def batch(n=16, c=3, h=12, w=10, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identity_when_nothing_is_on():
    assert augment.get(None) is None
    assert augment.get({}) is None
    assert augment.get("none") is None
    assert augment.get(augment.resolve({})) is None
    x = batch()
    assert augment.Augment({}).__call__(x, gen()) is x


def test_resolve_is_explicit_canonical_and_idempotent():
    r = augment.resolve({"zoom_range": 0.2, "horizontal_flip": True})
    assert set(r) == set(augment.DEFAULTS)
    assert r["zoom_range"] == pytest.approx([0.8, 1.2]) and r["horizontal_flip"] is True
    assert augment.resolve(r) == r
    assert augment.resolve("cifar")["crop_padding"] == 4


def test_unknown_and_bad_options():
    with pytest.raises(UserError, match="did you mean 'rotation_range'"):
        augment.get({"rotation_rnge": 10})
    with pytest.raises(UserError, match="rescale"):
        augment.get({"rescale": 1 / 255})
    with pytest.raises(UserError, match="fill_mode"):
        augment.get({"rotation_range": 5, "fill_mode": "wrapp"})
    with pytest.raises(UserError, match="horizontal_flip"):
        augment.get({"horizontal_flip": "yes"})
    with pytest.raises(UserError, match="brightness_range"):
        augment.get({"brightness_range": [1.2, 0.8]})


@pytest.mark.parametrize("key", list(ALL_ON))
def test_each_option_keeps_shape_range_and_is_reproducible(key):
    aug = augment.get({key: ALL_ON[key]})
    x = batch()
    a, b = aug(x.clone(), gen(1)), aug(x.clone(), gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6
    assert not torch.equal(a, x)  # it did something to a batch of 16
    c = aug(x.clone(), gen(2))
    assert not torch.equal(a, c)


def test_all_options_together_and_generator_advances():
    aug = augment.get(ALL_ON)
    x = batch(n=8, c=1, h=28, w=28)
    g = gen(5)
    first, second = aug(x, g), aug(x, g)
    assert first.shape == x.shape and not torch.equal(first, second)
    assert torch.equal(aug(x, gen(5)), first)
    assert aug(x.double(), gen(5)).dtype == torch.float64
    assert aug(x, None).shape == x.shape  # global RNG when no generator


def test_flips_are_exact():
    x = batch(n=32)
    out = augment.get({"horizontal_flip": True})(x, gen(3))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(32)]
    same = [torch.equal(out[i], x[i]) for i in range(32)]
    assert all(f or s for f, s in zip(flipped, same)) and 4 < sum(flipped) < 28
    out = augment.get({"vertical_flip": True})(x, gen(3))
    assert all(torch.equal(out[i], x[i].flip(-2)) or torch.equal(out[i], x[i]) for i in range(32))


def test_flip_folded_into_the_affine_is_exact_at_pixel_centres():
    x = batch(n=32)
    out = augment.get({"horizontal_flip": True, "rotation_range": 1e-7})(x, gen(3))
    for i in range(32):
        assert torch.allclose(out[i], x[i], atol=1e-4) or torch.allclose(out[i], x[i].flip(-1), atol=1e-4)


def _fixed_draws(monkeypatch, where: float):
    """Make every uniform draw return lo + where * (hi - lo)."""

    def uniform(n, lo, hi, generator, device):
        return torch.full((n,), lo + where * (hi - lo), device=device)

    monkeypatch.setattr(augment.Augment, "_uniform", staticmethod(uniform))


def test_rotation_90_matches_rot90(monkeypatch):
    _fixed_draws(monkeypatch, 1.0)  # +rotation_range
    x = batch(n=2, h=9, w=9)
    out = augment.get({"rotation_range": 90})(x, gen())
    assert any(torch.allclose(out, torch.rot90(x, k, dims=(-2, -1)), atol=1e-4) for k in (1, -1))


def test_shift_in_pixels_and_fractions(monkeypatch):
    _fixed_draws(monkeypatch, 1.0)  # +range
    x = batch(n=2, h=6, w=8)
    # 2 pixels either way: a fraction of the width, float pixels, and an int (Keras: ±{0, 1, 2})
    for spec in ({"width_shift_range": 0.25}, {"width_shift_range": 2.0}, {"width_shift_range": 3}):
        out = augment.get({**spec, "fill_mode": "constant"})(x, gen())
        shifted = torch.zeros_like(x)
        shifted[..., :-2] = x[..., 2:]
        shifted_other = torch.zeros_like(x)
        shifted_other[..., 2:] = x[..., :-2]
        assert torch.allclose(out, shifted, atol=1e-5) or torch.allclose(out, shifted_other, atol=1e-5)


def _shifts(spec, n=4000, w=64):
    """The horizontal shift of each sample, from where a one-pixel-wide bright column lands."""
    x = torch.zeros(n, 1, 1, w)
    x[..., w // 2] = 1.0
    out = augment.get({**spec, "fill_mode": "constant"})(x, gen(5))[:, 0, 0]
    return (out * torch.arange(w)).sum(-1) / out.sum(-1) - w // 2


def test_integer_and_list_shift_ranges_shift_by_whole_pixels_as_keras():
    # Keras: an int s shifts by ±choice(range(s)); a list by ± one of its values (x width when all < 1).
    for spec, allowed in (({"width_shift_range": 3}, {-2, -1, 0, 1, 2}),
                          ({"width_shift_range": [2, 5]}, {-5, -2, 2, 5}),
                          ({"width_shift_range": [0.125]}, {-8, 8})):
        shifts = _shifts(spec)
        assert torch.allclose(shifts, shifts.round(), atol=1e-4), spec
        counts = {int(v): int((shifts.round() == v).sum()) for v in shifts.round().unique()}
        assert set(counts) == allowed, spec
        assert min(counts.values()) > 4000 / len(allowed) / 3, counts  # every value drawn, roughly evenly
    shifts = _shifts({"width_shift_range": 3.0})  # a float: continuous
    assert (shifts - shifts.round()).abs().max() > 0.2 and shifts.abs().max() <= 3.0 + 1e-4


def test_shift_range_kind_is_kept_in_the_resolved_spec():
    r = augment.resolve({"width_shift_range": 3, "height_shift_range": 3.0})
    assert (r["width_shift_range"], type(r["width_shift_range"])) == (3, int)
    assert (r["height_shift_range"], type(r["height_shift_range"])) == (3.0, float)
    assert augment.resolve({"width_shift_range": [1, 0.5]})["width_shift_range"] == [1.0, 0.5]
    for bad in ([], [-1], "3", True):
        with pytest.raises(UserError, match="width_shift_range"):
            augment.resolve({"width_shift_range": bad})


def test_zoom_keeps_the_centre(monkeypatch):
    _fixed_draws(monkeypatch, 0.0)  # zoom = lower bound
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1.0
    out = augment.get({"zoom_range": [0.5, 0.5]})(x, gen())  # zoom in 2x: the centre stays the centre
    assert out[0, 0].argmax().item() == 4 * 9 + 4


def test_constant_fill_uses_cval():
    x = torch.full((4, 1, 8, 8), 0.5)
    out = augment.get({"rotation_range": 45, "zoom_range": [1.5, 1.5], "fill_mode": "constant", "cval": 1.0})(x, gen())
    assert float(out.max()) == pytest.approx(1.0, abs=1e-5) and float(out.min()) == pytest.approx(0.5, abs=1e-5)
    out = augment.get({"rotation_range": 45, "zoom_range": [1.5, 1.5]})(x, gen())  # nearest fill
    assert torch.allclose(out, x, atol=1e-5)


def test_crop_is_an_integer_shift_with_zero_padding():
    x = batch(n=20, c=2, h=7, w=7) + 0.01
    p = 2
    out = augment.get({"crop_padding": p})(x, gen(4))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for i in range(20):
        assert any(
            torch.equal(out[i], padded[i, :, dy:dy + 7, dx:dx + 7])
            for dy in range(2 * p + 1) for dx in range(2 * p + 1)
        )


def test_cutout_zeroes_one_clipped_square():
    x = torch.ones(64, 3, 10, 10)
    out = augment.get({"cutout_size": 4})(x, gen(6))
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert int(zeros.max()) == 16 and int(zeros.min()) >= 4  # full square, or clipped at a corner
    assert torch.equal(out[:, 0], out[:, 2])  # same square in every channel


def test_brightness_scales_and_clamps(monkeypatch):
    _fixed_draws(monkeypatch, 1.0)
    x = torch.full((2, 1, 4, 4), 0.6)
    out = augment.get({"brightness_range": [0.5, 1.5]})(x, gen())
    assert torch.allclose(out, torch.full_like(x, 0.9))
    out = augment.get({"brightness_range": [2.0, 2.0]})(x, gen())
    assert torch.allclose(out, torch.ones_like(x))


def test_rejects_uint8_batches():
    with pytest.raises(TypeError):
        augment.get({"horizontal_flip": True})(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), gen())


def test_constant_fill_is_exactly_cval_outside_and_never_blends_it_in():
    # scipy's "constant" (Keras' fill): cval beyond the outer pixel centres, and inside, interpolation
    # between image pixels only. A 3-pixel shift of an image of ones: 3 columns of cval, the rest 1.
    x = torch.ones(1, 1, 8, 8)
    for cval in (0.0, 0.25):
        out = augment.affine(x, tx=3.0, fill_mode="constant", cval=cval)[0, 0]
        assert torch.equal(out[:, -3:], torch.full((8, 3), cval)) and torch.allclose(out[:, :-3], torch.ones(8, 5))
    out = augment.affine(x, tx=2.5, fill_mode="constant", cval=0.0)[0, 0]  # half a pixel past the centres
    assert torch.equal(out[:, -3:], torch.zeros(8, 3)) and torch.allclose(out[:, :-3], torch.ones(8, 5))


KERAS_TRANSFORMS = [
    {"theta": 25, "shear": 15, "zx": 1.3, "zy": 0.7, "tx": 3, "ty": -2},
    {"theta": -40, "tx": 4.5},
    {"zx": 0.6, "zy": 0.6, "ty": 2},
    {"theta": 90, "flip_horizontal": True},
    {"shear": -20, "tx": -1.5, "ty": 3.5, "flip_vertical": True},
]


@pytest.mark.parametrize("fill_mode, cval", [("nearest", 0.0), ("reflect", 0.0), ("constant", 0.0), ("constant", 0.3)])
def test_affine_matches_keras_image_data_generator(keras_torch, fill_mode, cval):
    """Differential: Keras' ImageDataGenerator.apply_transform (scipy, float64) on a square image."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    img = torch.rand(24, 24, 1, generator=gen(1), dtype=torch.float64)
    keras_gen = ImageDataGenerator(fill_mode=fill_mode, cval=cval)
    for p in KERAS_TRANSFORMS:
        expected = torch.from_numpy(keras_gen.apply_transform(img.numpy(), dict(p))[..., 0].copy())
        ours = augment.affine(
            img.permute(2, 0, 1)[None], theta=p.get("theta", 0), tx=p.get("tx", 0), ty=p.get("ty", 0),
            shear=p.get("shear", 0), zx=p.get("zx", 1), zy=p.get("zy", 1), fill_mode=fill_mode, cval=cval,
            flip_x=torch.tensor([p.get("flip_horizontal", False)]),
            flip_y=torch.tensor([p.get("flip_vertical", False)]),
        )[0, 0]
        assert torch.allclose(ours, expected, atol=1e-5), (p, float((ours - expected).abs().max()))


def test_channel_shift_matches_keras(keras_torch, monkeypatch):
    """Keras' apply_channel_shift: one intensity for every channel, clipped to the image's min..max."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    _fixed_draws(monkeypatch, 1.0)  # the intensity is +channel_shift_range
    img = torch.rand(10, 12, 3, generator=gen(2), dtype=torch.float64) * 0.6 + 0.2  # spans ~0.2..0.8
    for intensity in (30.0, 200.0):  # a little, and past the image's maximum
        expected = ImageDataGenerator().apply_transform(img.numpy() * 255, {"channel_shift_intensity": intensity})
        ours = augment.get({"channel_shift_range": intensity})(img.permute(2, 0, 1)[None], gen())[0]
        torch.testing.assert_close(ours.permute(1, 2, 0) * 255, torch.from_numpy(expected.copy()), atol=1e-6, rtol=0)


def test_augmentation_is_a_registry_of_presets_taking_the_declared_options():
    """issue 22: a preset is a registry entry; a table with its name adds options; the limits are the
    declarations' and the rules across options are declared beside them (one resolved form, one run key)."""
    assert augment.resolve({"name": "cifar"}) == augment.resolve("cifar") == augment.resolve("CIFAR")
    with_cutout = augment.resolve({"name": "cifar", "cutout_size": 8.0})
    assert with_cutout == {**augment.resolve("cifar"), "cutout_size": 8}
    assert isinstance(with_cutout["cutout_size"], int)
    assert augment.resolve({"name": "none"}) == augment.resolve({}) == augment.DEFAULTS
    assert augment.REGISTRY.list() == ["augment", "cifar", "none"]
    for spec, message in [
        ({"crop_padding": 4.5}, r"option 'crop_padding' must be a whole number >= 0, got 4.5"),
        ({"zoom_range": [0.0, 1.2]}, r"zoom_range must stay above 0"),
        ({"zoom_range": 1.0}, r"zoom_range 1.0 would zoom by 0 or less"),
        ({"zoom_range": [1.2, 0.8]}, r"zoom_range must be \[lower, upper\] with lower <= upper"),
        ({"brightness_range": [0.5]}, r"brightness_range must be \[lower, upper\]"),
        ({"width_shift_range": []}, r"width_shift_range must not be an empty list"),
        ({"name": "cifr"}, r"unknown augmentation preset 'cifr'; did you mean 'cifar'"),
    ]:
        with pytest.raises(UserError, match=message):
            augment.resolve(spec)
