"""Model zoo: parameter counts, summaries, forward shapes, freezing, input adaptation."""

from __future__ import annotations

import pytest
import torch

from cnnbench import models
from cnnbench.errors import UnknownNameError, UserError


def n_params(model):
    return models.count_params(model)["total"]


# --- the seeds' CNNs -----------------------------------------------------------------------------
def test_keras_mnist_cnn_matches_keras_param_count_and_summary():
    m = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
    assert n_params(m) == 1_199_882
    text = models.summary(m, (1, 28, 28))
    assert "Total params: 1,199,882" in text
    assert "Trainable params: 1,199,882" in text
    assert "Non-trainable params: 0" in text
    assert "(None, 64, 24, 24)" in text and "1,179,776" in text
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_keras_mnist_cnn_filters_option_and_keras_init():
    m = models.get({"name": "keras_mnist_cnn", "filters": [8, 16]}, input_shape=(1, 28, 28), num_outputs=3)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16]
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            assert torch.all(mod.bias == 0)
            fan_in = mod.weight[0].numel()
            fan_out = mod.weight.shape[0] * mod.weight[0][0].numel() if mod.weight.dim() > 2 else mod.weight.shape[0]
            limit = (6 / (fan_in + fan_out)) ** 0.5  # glorot_uniform
            assert mod.weight.abs().max() <= limit + 1e-6
            assert mod.weight.abs().max() > 0.5 * limit


def test_he_normal_has_keras_std_and_cut():
    # Keras' HeNormal: truncated at ±2 of the normal's std, which is scaled up by 1/0.8796 so that the
    # truncated draw has std sqrt(2 / fan_in) (keras.initializers.VarianceScaling).
    from cnnbench.models._base import he_normal_

    torch.manual_seed(0)
    w = he_normal_(torch.empty(256, 256, 3, 3))
    target = (2 / (256 * 9)) ** 0.5
    assert float(w.std()) == pytest.approx(target, rel=0.01)
    assert float(w.abs().max()) <= 2 * target / 0.87962566103423978 + 1e-7


def test_he_normal_against_keras(keras_torch):
    from cnnbench.models._base import he_normal_

    torch.manual_seed(0)
    ours = he_normal_(torch.empty(64, 128, 3, 3))  # (out, in, kh, kw) = Keras' (3, 3, 128, 64)
    theirs = keras_torch.initializers.HeNormal(seed=0)((3, 3, 128, 64))
    theirs = torch.as_tensor(keras_torch.ops.convert_to_numpy(theirs))
    assert float(ours.std()) == pytest.approx(float(theirs.std()), rel=0.02)
    # (not the max: Keras' torch backend keeps a rare draw beyond the cut after 4 tries)
    q = torch.tensor(0.99, dtype=torch.float64)
    assert float(ours.abs().double().quantile(q)) == pytest.approx(float(theirs.abs().double().quantile(q)), rel=0.02)


def test_resolve_is_explicit_json_safe_and_name_insensitive():
    r = models.resolve("MnistCNN")
    assert r == {"name": "keras_mnist_cnn", "filters": [32, 64], "kernel_size": 3, "hidden_units": 128,
                 "dropout": [0.25, 0.5]}
    assert models.resolve({"name": "digits-cnn", "hidden_units": 32})["hidden_units"] == 32
    # a resolved spec builds the same model
    m = models.get(r, input_shape=(1, 28, 28), num_outputs=10)
    assert n_params(m) == 1_199_882


def test_bad_specs_raise_user_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'keras_mnist_cnn'"):
        models.resolve("keras_mnist_cn")
    with pytest.raises(UserError, match="has no option 'filter'"):
        models.resolve({"name": "keras_mnist_cnn", "filter": [1, 2]})
    with pytest.raises(UserError, match="set by the run"):
        models.resolve({"name": "keras_mnist_cnn", "num_outputs": 3})
    with pytest.raises(UserError, match="at least"):
        models.get("keras_mnist_cnn", input_shape=(1, 4, 4), num_outputs=10)


@pytest.mark.parametrize("name, options, shape, message", [
    ("lenet5", {"filters": [6, 16, 32]}, (1, 28, 28), "filters must be one value or 2 values"),
    ("keras_mnist_cnn", {"kernel_size": [3, 3]}, (1, 28, 28),
     "option 'kernel_size' must be a whole number >= 1, got [3, 3]"),
    ("digits_cnn", {"hidden_units": "abc"}, (1, 8, 8), "option 'hidden_units' must be a whole number >= 1"),
    ("digits_cnn", {"hidden_units": 0}, (1, 8, 8), "option 'hidden_units' must be a whole number >= 1, got 0"),
    ("digits_cnn", {"filters": [16, 2.5]}, (1, 8, 8),
     "option 'filters' must be a whole number or a list of whole numbers >= 1"),
    ("digits_cnn", {"dropout": "a"}, (1, 8, 8), "option 'dropout' must be a number or a list of numbers in [0, 1)"),
    ("krutov_cnn", {"filters": []}, (3, 150, 150), "filters must be one value or a non-empty list"),
    ("resnet20", {"l2": "x"}, (3, 32, 32), "option 'l2' must be a number >= 0, got 'x'"),
])
def test_bad_model_options_are_one_line_errors(name, options, shape, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        models.get({"name": name, **options}, input_shape=shape, num_outputs=10)


def test_digits_cnn_is_small_and_works_channels_last():
    m = models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10)
    assert n_params(m) < 20_000
    x = torch.rand(4, 1, 8, 8)
    ref = m.eval()(x)
    m_cl = m.to(memory_format=torch.channels_last)
    out = m_cl(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, ref)
    out.sum().backward()


# --- parameter counts of the seeds' models (Keras counting: BN moving stats are non-trainable) -----
@pytest.mark.parametrize(
    "name, input_shape, num_outputs, total",
    [
        ("keras_mnist_cnn", (1, 28, 28), 10, 1_199_882),  # Keras examples/mnist_cnn.py
        ("keras_mnist_mlp", (1, 28, 28), 10, 669_706),  # Keras examples/mnist_mlp.py
        ("krutov_cnn", (3, 150, 150), 1, 3_453_121),  # Deep Learning with Python 5.2
        ("cifar_simple_cnn", (3, 32, 32), 10, 122_570),  # TensorFlow CNN tutorial
        ("cifar_simple_cnn", (3, 32, 32), 100, 128_420),  # the CIFAR-100 study's "3 conv + Dense 64 + Dense 100"
        ("lenet5", (1, 28, 28), 10, 61_706),
    ],
)
def test_seed_model_param_counts(name, input_shape, num_outputs, total):
    m = models.get(name, input_shape=input_shape, num_outputs=num_outputs)
    assert models.count_params(m) == {"total": total, "trainable": total, "non_trainable": 0}
    assert f"Total params: {total:,}" in models.summary(m, input_shape)


# Keras cifar10_resnet.py: totals as Keras' model.summary() counts them (274,442 for ResNet20 v1), and
# the example's docstring "approx the same as Table 6 of [a]": 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
RESNET_V1 = {20: (274_442, 1_376, 0.27), 32: (470_218, 2_272, 0.46), 44: (665_994, 3_168, 0.66),
             56: (861_770, 4_064, 0.85), 110: (1_742_762, 8_096, 1.7)}
RESNET_V2 = {20: (574_090, 3_488), 29: (849_002, 5_216), 56: (1_673_738, 10_400), 110: (3_323_210, 20_768),
             164: (4_972_682, 31_136)}


@pytest.mark.parametrize("depth", sorted(RESNET_V1))
def test_resnet_v1_param_counts_match_keras_example(depth):
    total, non_trainable, documented_millions = RESNET_V1[depth]
    m = models.get(f"resnet{depth}", input_shape=(3, 32, 32), num_outputs=10)
    assert models.count_params(m) == {"total": total, "trainable": total - non_trainable,
                                      "non_trainable": non_trainable}
    assert abs(total / 1e6 - documented_millions) / documented_millions < 0.03


@pytest.mark.parametrize("depth", sorted(RESNET_V2))
def test_resnet_v2_param_counts(depth):
    total, non_trainable = RESNET_V2[depth]
    m = models.get(f"resnet{depth}_v2", input_shape=(3, 32, 32), num_outputs=10)
    assert models.count_params(m)["total"] == total
    assert models.count_params(m)["non_trainable"] == non_trainable
    generic = models.get({"name": "resnet_cifar", "depth": depth, "version": 2}, input_shape=(3, 32, 32),
                         num_outputs=10)
    assert models.count_params(generic)["total"] == total


def test_resnet20_summary_and_depth_rules_and_regularizer():
    m = models.get("ResNet20v1", input_shape=(3, 32, 32), num_outputs=10)
    text = models.summary(m, (3, 32, 32))
    for line in ("Total params: 274,442", "Trainable params: 273,066", "Non-trainable params: 1,376",
                 "(None, 64, 8, 8)", "Output: (None, 10)"):
        assert line in text
    reg = m.regularization_loss()
    kernels = sum(mod.weight.pow(2).sum() for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))
    torch.testing.assert_close(reg, 1e-4 * kernels)
    with pytest.raises(UserError, match="6n\\+2"):
        models.get({"name": "resnet_cifar", "depth": 21}, input_shape=(3, 32, 32), num_outputs=10)
    with pytest.raises(UserError, match="9n\\+2"):
        models.get({"name": "resnet_cifar", "depth": 32, "version": 2}, input_shape=(3, 32, 32), num_outputs=10)


def test_keras_same_padding_stride2_pads_bottom_right():
    from cnnbench.models._base import Conv2D

    conv = Conv2D(1, 1, 3, strides=2, padding="same")
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # TensorFlow pads 0 rows/cols before and 1 after: windows start at rows/cols 0 and 2
    assert conv(x)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


# --- every registered model ---------------------------------------------------------------------
def _spec(name):
    entry = models.REGISTRY.entry(name)
    return {"name": name, "weights": "none"} if entry.info.get("transfer") else name


@pytest.mark.parametrize("name", models.REGISTRY.list())
def test_every_model_forward_at_smallest_input(name):
    shape = models.REGISTRY.entry(name).info["min_input"]
    for k in (3, 1):
        m = models.get(_spec(name), input_shape=shape, num_outputs=k).eval()
        with torch.no_grad():
            out = m(torch.rand(2, *shape))
        assert out.shape == (2, k) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        if models.REGISTRY.entry(name).info.get("transfer"):
            break  # building the big backbones twice is slow; one output size is enough here


@pytest.mark.parametrize("name, shape", [("resnet20", (3, 16, 16)), ("resnet20_v2", (3, 16, 16)),
                                         ("cifar_simple_cnn", (3, 32, 32)), ("mobilenet_v3_small", (1, 20, 20))])
def test_models_train_in_channels_last(name, shape):
    torch.manual_seed(0)
    m = models.get(_spec(name), input_shape=shape, num_outputs=5)
    x = torch.rand(4, *shape)
    m.eval()
    ref = m(x)
    m = m.to(memory_format=torch.channels_last)
    out = m(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    m.train()
    m(x.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_custom_model_by_reference(tmp_path, monkeypatch):
    (tmp_path / "my_models_ref.py").write_text(
        "import torch\n"
        "class Tiny(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, width=4):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_outputs)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "my_models_ref:Tiny", "width": 8}
    assert models.resolve(spec) == spec
    m = models.get(spec, input_shape=(1, 4, 4), num_outputs=3)
    assert m(torch.rand(2, 1, 4, 4)).shape == (2, 3)
    with pytest.raises(UserError, match=r"has no attribute .Nope."):
        models.resolve("my_models_ref:Nope")


# --- transfer learning --------------------------------------------------------------------------
def _one_sgd_step(m, shape, num_outputs=2):
    torch.manual_seed(0)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.rand(4, *shape)
    y = torch.arange(4) % num_outputs
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    return {k: not torch.equal(v, before[k]) for k, v in m.named_parameters()}


def test_vgg19_freeze_until_keras_block5_conv1():
    m = models.get({"name": "vgg19", "weights": "none", "freeze_until": "block5_conv1", "head": "flatten",
                    "hidden_units": 8}, input_shape=(3, 32, 32), num_outputs=2)
    changed = _one_sgd_step(m, (3, 32, 32))
    block5_conv1 = "backbone.features.28."  # Keras block5_conv1 is torchvision VGG19 features[28]
    first = list(changed).index(block5_conv1 + "weight")
    names = list(changed)
    assert first == 24  # 12 convs (weight + bias) before it
    assert not any(changed[n] for n in names[:first])
    assert all(changed[n] for n in names[first:])
    assert all(not p.requires_grad for n, p in m.named_parameters() if names.index(n) < first)
    text = models.summary(m, (3, 32, 32))
    assert "Non-trainable params: 10,585,152" in text  # blocks 1-4 of VGG19


def test_vgg16_keras_layer_names_map_to_torchvision_indices():
    from cnnbench.models.transfer import vgg_keras_names

    names = vgg_keras_names("D")
    assert names["block1_conv1"] == "features.0" and names["block1_pool"] == "features.4"
    assert names["block5_conv1"] == "features.24" and names["block5_pool"] == "features.30"
    assert vgg_keras_names("E")["block5_conv1"] == "features.28"


def test_resnet18_freeze_until_torch_name_keeps_frozen_batchnorm_in_eval():
    m = models.get({"name": "resnet18", "weights": "none", "freeze_until": "layer3"},
                   input_shape=(3, 32, 32), num_outputs=2)
    frozen_bn = m.backbone.layer2[1].bn2
    assert not frozen_bn.training  # from the start: a user's own loop may never call model.train()
    with torch.no_grad():
        stats = frozen_bn.running_mean.clone()
        m(torch.rand(2, 3, 32, 32))
        assert torch.equal(frozen_bn.running_mean, stats)
    assert m.backbone.layer3[0].bn1.momentum == pytest.approx(0.01)  # Keras' momentum 0.99
    changed = _one_sgd_step(m, (3, 32, 32))
    names = list(changed)
    first = names.index("backbone.layer3.0.conv1.weight")
    assert not any(changed[n] for n in names[:first])
    assert all(changed[n] for n in names[first:])
    assert not frozen_bn.training and torch.equal(frozen_bn.running_mean, stats)
    assert m.backbone.layer3[0].bn1.training
    m.eval().train()
    assert not frozen_bn.training
    # `backbone.` prefix and "head" (freeze the whole backbone) work too
    m2 = models.get({"name": "resnet18", "weights": "none", "freeze_until": "head"},
                    input_shape=(3, 32, 32), num_outputs=2)
    assert all(not p.requires_grad for p in m2.backbone.parameters())
    assert all(p.requires_grad for p in m2.head.parameters())
    with pytest.raises(UserError, match="did you mean 'layer4'"):
        models.get({"name": "resnet18", "weights": "none", "freeze_until": "layer5"},
                   input_shape=(3, 32, 32), num_outputs=2)


def test_transfer_input_adaptation_grey_to_rgb_resize_and_normalisation():
    m = models.get({"name": "mobilenet_v3_small", "weights": "none"}, input_shape=(1, 20, 24), num_outputs=4).eval()
    grey = torch.rand(2, 1, 20, 24)
    adapted = m.adapt(grey)
    assert adapted.shape == (2, 3, 32, 32)
    rgb = grey.expand(-1, 3, -1, -1)
    torch.testing.assert_close(m(grey), m(rgb))
    # normalisation with ImageNet mean/std, no resize when big enough
    m32 = models.get({"name": "mobilenet_v3_small", "weights": "none"}, input_shape=(3, 32, 32), num_outputs=4)
    x = torch.full((1, 3, 32, 32), 0.485)
    assert m32.adapt(x)[0, 0].abs().max() < 1e-6
    raw = models.get({"name": "mobilenet_v3_small", "weights": "none", "normalize": False, "resize": 48},
                     input_shape=(3, 32, 32), num_outputs=4)
    assert raw.adapt(x).shape == (1, 3, 48, 48)
    with pytest.raises(UserError, match="1 or 3 input channels"):
        models.get({"name": "resnet18", "weights": "none"}, input_shape=(4, 32, 32), num_outputs=2)


def test_transfer_resolve_and_heads():
    r = models.resolve({"name": "vgg16", "head": "flatten"})
    assert r == {"name": "vgg16", "weights": "IMAGENET1K_V1", "freeze_until": None, "head": "flatten",
                 "hidden_units": 256, "dropout": 0.5, "resize": None, "normalize": True}
    assert models.resolve("resnet50")["weights"] == "IMAGENET1K_V2"
    assert models.resolve({"name": "resnet18", "weights": "none"})["hidden_units"] == 0
    with pytest.raises(UserError, match="option 'head' must be 'gap' or 'flatten'"):
        models.resolve({"name": "vgg16", "head": "dense"})
    with pytest.raises(UserError, match="unknown weights"):
        models.resolve({"name": "vgg16", "weights": "imagenet21k"})



def test_transfer_dropout_first_head_and_gap_dropout_head():
    # Krutov et al.'s VGG19 head (as Chollet's cats-vs-dogs CNN): Flatten - Dropout .5 - Dense512 relu - Dense
    spec = {"name": "vgg19", "weights": "none", "freeze_until": "block5_conv1", "head": "flatten",
            "hidden_units": 512, "dropout": 0.5, "dropout_first": True}
    r = models.resolve(spec)
    assert r["dropout_first"] is True
    m = models.get(spec, input_shape=(3, 32, 32), num_outputs=1)
    assert [(n, type(layer).__name__) for n, layer in m.head.named_children()] == [
        ("flatten", "Flatten"), ("dropout", "Dropout"), ("dense", "Dense"), ("dense_1", "Dense")]
    assert m.head.dense.out_features == 512 and m.head.dense_1.out_features == 1
    # default order unchanged: Dense - Dropout; and dropout_first = false is not written into the config,
    # so run keys of configs that do not use it stay what they were
    plain = {k: v for k, v in spec.items() if k != "dropout_first"}
    assert "dropout_first" not in models.resolve(plain)
    assert models.resolve({**plain, "dropout_first": False}) == models.resolve(plain)
    m2 = models.get(plain, input_shape=(3, 32, 32), num_outputs=1)
    assert [n for n, _ in m2.head.named_children()] == ["flatten", "dense", "dropout", "dense_1"]
    # the CIFAR-100 study's head on a frozen backbone: GlobalAveragePooling - Dropout - Dense
    m3 = models.get({"name": "resnet18", "weights": "none", "freeze_until": "head", "dropout": 0.5},
                    input_shape=(3, 32, 32), num_outputs=100)
    assert [n for n, _ in m3.head.named_children()] == ["global_average_pooling2d", "flatten", "dropout", "dense"]
    assert not any(p.requires_grad for p in m3.backbone.parameters())
    with pytest.raises(UserError, match=r"dropout_first .* needs hidden_units > 0 and dropout > 0"):
        models.resolve({"name": "vgg16", "dropout": 0.5, "dropout_first": True})
    with pytest.raises(UserError, match="option 'dropout_first' must be true or false"):
        models.resolve({"name": "vgg16", "hidden_units": 8, "dropout": 0.5, "dropout_first": "yes"})

def test_imagenet_weights_offline_raise_a_user_error(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as err:
        models.get({"name": "mobilenet_v3_small"}, input_shape=(3, 32, 32), num_outputs=2)
    msg = str(err.value)
    assert "mobilenet_v3_small-047dcff4.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert 'weights = "none"' in msg and "\n" not in msg


def test_transfer_weights_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    path = tmp_path / "mnv3.pth"
    torch.save(reference.state_dict(), path)
    m = models.get({"name": "mobilenet_v3_small", "weights": str(path)}, input_shape=(3, 32, 32), num_outputs=2)
    torch.testing.assert_close(m.backbone.features[0][0].weight, reference.features[0][0].weight)
    with pytest.raises(UserError, match="does not exist"):
        models.get({"name": "mobilenet_v3_small", "weights": str(tmp_path / "missing.pth")},
                   input_shape=(3, 32, 32), num_outputs=2)
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="does not match"):
        models.get({"name": "mobilenet_v3_small", "weights": str(tmp_path / "wrong.pth")},
                   input_shape=(3, 32, 32), num_outputs=2)


def test_fast_dropout_keeps_the_right_fraction_scales_and_is_seeded():
    from cnnbench.models._base import Dropout

    x = torch.ones(200_000)
    for p in (0.25, 0.5, 0.3):
        d = Dropout(p).train()
        torch.manual_seed(0)
        y = d(x)
        kept = (y != 0).float().mean().item()
        assert kept == pytest.approx(1 - p, abs=0.005)
        assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
        torch.manual_seed(0)
        assert torch.equal(d(x), y)  # the global seed fixes the mask
    assert torch.equal(Dropout(0.5).eval()(x), x)
    # gradients flow through the kept elements only, scaled like nn.Dropout
    xg = torch.ones(1000, requires_grad=True)
    torch.manual_seed(1)
    out = Dropout(0.5).train()(xg)
    out.sum().backward()
    assert torch.equal(xg.grad, out.detach())
