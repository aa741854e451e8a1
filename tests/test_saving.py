"""Saving: one-file round trip (weights + config), weights_only loading, atomic writes, predict."""

from __future__ import annotations

import json
import os

import pytest
import torch

import cnnbench
from cnnbench import cli, models
from cnnbench.errors import UserError
from cnnbench.store import model_files as saving


def _trained(spec, shape, k, steps=1):
    torch.manual_seed(0)
    m = models.get(spec, input_shape=shape, num_outputs=k)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05)
    m.train()
    for _ in range(steps):  # moves weights and BatchNorm running statistics off their init
        out = m(torch.rand(4, *shape))
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.mark.parametrize(
    "spec, shape, k",
    [
        ("keras_mnist_cnn", (1, 28, 28), 10),
        ("resnet20_v2", (3, 16, 16), 5),
        ({"name": "mobilenet_v3_small", "weights": "none", "freeze_until": "features.9", "head": "flatten",
          "hidden_units": 8}, (1, 32, 32), 1),
    ],
)
def test_round_trip_identical_outputs_and_config(tmp_path, spec, shape, k):
    m = _trained(spec, shape, k)
    path = tmp_path / "sub" / "model.pt"
    extra = {"loss": "categorical_crossentropy" if k > 1 else "binary_crossentropy",
             "class_names": [f"c{i}" for i in range(max(k, 2))], "dataset": {"name": "x", "image_size": shape[-1]}}
    saving.save(m, path, config=extra)
    assert os.listdir(tmp_path / "sub") == ["model.pt"]  # no temp file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "cnnbench-model"
    config = json.loads(raw["config"])
    assert config["model"] == models.resolve(spec)
    assert config["input_shape"] == list(shape) and config["num_outputs"] == k
    assert config["class_names"] == extra["class_names"] and config["dataset"] == extra["dataset"]

    loaded = saving.load(path)
    assert not loaded.training
    assert loaded.cnnbench.saved == config
    x = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
    for (n1, p1), (n2, p2) in zip(m.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and p1.requires_grad == p2.requires_grad  # freezing survives


def test_load_does_not_fetch_pretrained_weights(tmp_path, monkeypatch):
    m = models.get({"name": "mobilenet_v3_small", "weights": "none"}, input_shape=(3, 32, 32), num_outputs=2)
    m.cnnbench.built["model"]["weights"] = "IMAGENET1K_V1"  # as if it had been built from ImageNet weights
    saving.save(m, tmp_path / "m.pt")

    def no_download(*a, **k):
        raise AssertionError("load must not download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    loaded = saving.load(tmp_path / "m.pt")
    assert loaded.cnnbench.saved["model"]["weights"] == "IMAGENET1K_V1"


def test_save_is_atomic_and_overwrites(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    a = models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10)
    saving.save(a, path)
    b = _trained("digits_cnn", (1, 8, 8), 10, steps=2)
    saving.save(b, path)  # replaces the old file
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(saving.load(path)(x), b(x))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        saving.save(a, path)
    assert os.listdir(tmp_path) == ["m.pt"]  # the temp file is gone, the old file intact
    monkeypatch.undo()
    torch.testing.assert_close(saving.load(path)(x), b(x))


def test_custom_model_reference_round_trip(tmp_path, monkeypatch):
    (tmp_path / "my_models_save.py").write_text(
        "import torch\n"
        "from cnnbench.models import REGISTRY\n"
        "class Tiny(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, width=4):\n"
        "        super().__init__()\n"
        "        c, h, w = input_shape\n"
        "        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, width),\n"
        "                                        torch.nn.ReLU(), torch.nn.Linear(width, num_outputs))\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
        "@REGISTRY.register('tiny_registered_for_saving_test')\n"
        "def tiny(input_shape, num_outputs, *, width=3):\n"
        "    return Tiny(input_shape, num_outputs, width)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = models.get({"name": "my_models_save:Tiny", "width": 6}, input_shape=(1, 4, 4), num_outputs=3)
    saving.save(m, tmp_path / "ref.pt")
    with pytest.raises(UserError, match=r"names model 'my_models_save:Tiny'.*trust_code=True"):
        saving.load(tmp_path / "ref.pt")  # a file may come from anyone: its code runs only when trusted
    loaded = saving.load(tmp_path / "ref.pt", trust_code=True)
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(loaded(x), m.eval()(x))

    import my_models_save  # noqa: F401  (registers tiny_registered_for_saving_test)

    try:
        r = models.get("tiny_registered_for_saving_test", input_shape=(1, 4, 4), num_outputs=2)
        saving.save(r, tmp_path / "reg.pt")
        assert saving.read(tmp_path / "reg.pt")[0]["model_module"] == "my_models_save"
        # the module is imported already: loading imports nothing, so no opt-in is needed
        assert models.count_params(saving.load(tmp_path / "reg.pt")) == models.count_params(r)
    finally:  # keep the shared registry as it was for other tests
        models.REGISTRY._entries.pop("tiny_registered_for_saving_test", None)
        models.REGISTRY._keys.pop("tinyregisteredforsavingtest", None)


def test_saving_a_model_not_built_by_get_needs_its_spec(tmp_path):
    bare = torch.nn.Linear(4, 2)
    with pytest.raises(UserError, match=r"not built with cnnbench\.models\.get"):
        saving.save(bare, tmp_path / "x.pt")
    with pytest.raises(UserError, match="not JSON-serialisable"):
        saving.save(models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10), tmp_path / "y.pt",
                    config={"bad": object()})


def test_load_rejects_other_files(tmp_path):
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a cnnbench model file"):
        saving.load(tmp_path / "plain.pt")
    with pytest.raises(UserError, match="does not exist"):
        saving.load(tmp_path / "missing.pt")


# --- predict -------------------------------------------------------------------------------------
def test_predict_softmax_shapes_and_uint8_equals_float():
    m = _trained("digits_cnn", (1, 8, 8), 10)
    m.cnnbench.saved = {**m.cnnbench.built}
    x = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    probs, labels = saving.predict(m, x, batch_size=64)
    assert probs.shape == (300, 10) and labels.shape == (300,) and labels.dtype == torch.int64
    torch.testing.assert_close(probs.sum(1), torch.ones(300))
    assert torch.equal(labels, probs.argmax(1))
    probs_f, _ = saving.predict(m, x.float() / 255)
    torch.testing.assert_close(probs, probs_f)
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.softmax(m(x.float() / 255), 1))
    with pytest.raises(UserError, match="takes 1x8x8 images"):
        saving.predict(m, torch.rand(2, 3, 8, 8))


def test_predict_single_sigmoid_unit_and_loss_from_config(tmp_path):
    m = _trained({"name": "keras_mnist_mlp", "hidden_units": [8]}, (1, 6, 6), 1)
    saving.save(m, tmp_path / "b.pt", config={"loss": "binary_crossentropy", "class_names": ["cat", "dog"]})
    loaded = saving.load(tmp_path / "b.pt")
    x = torch.rand(5, 1, 6, 6)
    probs, labels = saving.predict(loaded, x)
    assert probs.shape == (5, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    with torch.no_grad():
        torch.testing.assert_close(probs[:, 1], torch.sigmoid(m(x)[:, 0]))
    assert torch.equal(labels, (probs[:, 1] > 0.5).long())


def test_a_model_trained_by_fit_records_the_loss_as_written(tmp_path):
    x = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    y = torch.arange(40) % 3
    spec = {"name": "categorical_crossentropy", "label_smoothing": 0.1}
    h = cnnbench.fit({"name": "keras_mnist_mlp", "hidden_units": [8]}, x, y, loss=spec, epochs=1, batch_size=8)
    saving.save(h.model, tmp_path / "m.pt")
    loss = saving.load(tmp_path / "m.pt").cnnbench.saved["loss"]
    assert loss["from_logits"] is False and loss["label_smoothing"] == 0.1  # not the engine's logits copy


def test_predict_applies_recorded_input_normalization(tmp_path):
    m = _trained("cifar_simple_cnn", (3, 18, 18), 4)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.25]
    saving.save(m, tmp_path / "n.pt", config={"input_normalization": {"mean": mean, "std": std}})
    loaded = saving.load(tmp_path / "n.pt")
    x = torch.rand(3, 3, 18, 18)
    probs, _ = saving.predict(loaded, x)
    norm = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.softmax(m(norm), 1))


# --- evaluate (cnnbench evaluate MODEL_PATH) --------------------------------------------------------
def test_evaluate_command_on_the_recorded_dataset(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y_train=np.arange(20) % 3,
             x_test=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y_test=np.arange(12) % 3)
    m = _trained("digits_cnn", (1, 8, 8), 3)
    path = tmp_path / "m.pt"
    saving.save(m, path, config={"dataset": str(npz), "loss": "sparse_categorical_crossentropy"})

    from cnnbench import data

    ds = data.load(str(npz), data_dir=tmp_path)
    probs, labels = saving.predict(saving.load(path), ds.x_test, verbose=0)
    result = saving.evaluate_on_dataset(path, data_dir=tmp_path)
    assert result["images"] == 12
    assert result["accuracy"] == pytest.approx(float((labels == ds.y_test).float().mean()))
    expected_loss = torch.nn.functional.nll_loss(probs.log(), ds.y_test).item()
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-4)
    confusion = torch.tensor(result["confusion_matrix"])
    assert confusion.shape == (3, 3) and confusion.sum() == 12
    assert confusion.diagonal().sum().item() == round(result["accuracy"] * 12)
    for true_class in range(3):  # row = true class, column = predicted class
        assert confusion[true_class].tolist() == [int(((ds.y_test == true_class) & (labels == p)).sum())
                                                  for p in range(3)]
    assert "top5_accuracy" not in result  # only with more than 5 classes

    assert cli.main(["evaluate", str(path), "--data-dir", str(tmp_path), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(result["accuracy"])
    with pytest.raises(UserError, match="predicts 3 classes"):
        np.savez(tmp_path / "five.npz", x_train=np.zeros((5, 8, 8), np.uint8), y_train=np.arange(5),
                 x_test=np.zeros((5, 8, 8), np.uint8), y_test=np.arange(5))
        saving.evaluate_on_dataset(path, str(tmp_path / "five.npz"), data_dir=tmp_path)


def test_top5_accuracy_with_more_than_five_classes(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    npz = tmp_path / "ten.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_test=np.arange(40) % 10)
    path = tmp_path / "m.pt"
    saving.save(_trained("digits_cnn", (1, 8, 8), 10), path, config={"dataset": str(npz)})
    result = saving.evaluate_on_dataset(path, data_dir=tmp_path)
    probs, _ = saving.predict(saving.load(path), torch.from_numpy(np.load(npz)["x_test"]).unsqueeze(1))
    y = torch.arange(40) % 10
    expected = (probs.topk(5, dim=1).indices == y[:, None]).any(dim=1).float().mean().item()
    assert result["top5_accuracy"] == pytest.approx(expected) and result["top5_accuracy"] >= result["accuracy"]


# --- untrusted files run no code ------------------------------------------------------------------
def _hostile_file(tmp_path, monkeypatch, **config):
    """A model file whose config names code in a module that leaves a marker file when imported."""
    marker = tmp_path / "code_ran"
    (tmp_path / "hostile_mod_saving.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "from cnnbench import losses\n"
        "def build(input_shape, num_outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_outputs))\n"
        "def hinge(y_true, y_pred):\n"
        "    return (1 - y_true * y_pred).clamp(min=0).mean(-1)\n"
        "from cnnbench.models import REGISTRY\n"
        "if 'hostile_registered_net' not in REGISTRY:\n"
        "    REGISTRY.register('hostile_registered_net')(build)\n"
    )
    monkeypatch.setattr(models.REGISTRY, "_entries", dict(models.REGISTRY._entries))  # restored afterwards
    monkeypatch.setattr(models.REGISTRY, "_keys", dict(models.REGISTRY._keys))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "hostile_mod_saving", raising=False)
    full = {"model": {"name": "digits_cnn"}, "input_shape": [1, 8, 8], "num_outputs": 10, **config}
    state = models.get(full["model"], input_shape=(1, 8, 8), num_outputs=10).state_dict() \
        if full["model"]["name"] == "digits_cnn" else {"1.weight": torch.zeros(10, 64), "1.bias": torch.zeros(10)}
    path = tmp_path / "hostile.pt"
    torch.save({"format": saving.FORMAT, "version": 1, "config": json.dumps(full), "state_dict": state}, path)
    return path, marker


@pytest.mark.parametrize("config, refused", [
    ({"model": {"name": "hostile_mod_saving:build"}}, "names model 'hostile_mod_saving:build'"),
    ({"loss": {"name": "hostile_mod_saving:hinge"}}, "names loss 'hostile_mod_saving:hinge'"),
    ({"model": {"name": "torch.hub:load", "repo_or_dir": ".", "model": "x", "source": "local"}},
     "names model 'torch.hub:load'"),
    ({"model": {"name": "hostile_registered_net"}, "model_module": "hostile_mod_saving"},
     "registered by module 'hostile_mod_saving'"),
])
def test_loading_a_file_that_names_code_needs_trust_code(tmp_path, monkeypatch, config, refused):
    path, marker = _hostile_file(tmp_path, monkeypatch, **config)
    with pytest.raises(UserError, match=f"{refused}.*--trust-code") as e:
        saving.load(path)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=refused):
        saving.evaluate_on_dataset(path, "digits")
    assert not marker.exists()  # refused before importing anything
    if "torch.hub" in str(config):
        return  # trusting it would run torch.hub.load: nothing to gain in a test
    model = saving.load(path, trust_code=True)
    saving.predict(model, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))  # the recorded loss builds too
    assert marker.exists()


@pytest.mark.parametrize("saved_metrics", [{"out": [1]}, {"out": 7}, [3, None], "ece"])
def test_a_malformed_metrics_entry_in_a_model_file_is_ignored_not_a_traceback(tmp_path, saved_metrics):
    """A model file's `metrics` are only ever built-in names (found in review: {"out": [1]} raised TypeError)."""
    m = models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10)
    path = tmp_path / "m.pt"
    saving.save(m, path, config={"metrics": saved_metrics})
    scores = cnnbench.evaluate(saving.load(path), torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), num_classes=10,
                               return_dict=True)
    assert {"loss", "accuracy", "macro_f1"} <= set(scores)


# --- the model's one record (models.record) ------------------------------------------------------
def test_a_model_carries_one_record_from_build_fit_and_load(tmp_path):
    from cnnbench.engine.record import recorded_loss
    from cnnbench.models.record import ModelRecord

    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(64) % 3
    h = cnnbench.fit("digits_cnn", x, y, loss="sparse_categorical_crossentropy", epochs=1, batch_size=32,
                     metrics=["nll"], verbose=0, device="cpu")
    record = h.model.cnnbench
    assert isinstance(record, ModelRecord)
    assert record.built == {"model": models.resolve("digits_cnn"), "input_shape": [1, 8, 8], "num_outputs": 3}
    assert record.loss.name == "sparse_categorical_crossentropy" and record.metrics == ["nll"]
    assert not [k for k in vars(h.model) if k.startswith("cnnbench_")]  # no loose attributes
    saving.save(h.model, tmp_path / "m.pt")
    loaded = saving.load(tmp_path / "m.pt")
    assert loaded.cnnbench.built == record.built and loaded.cnnbench.loss is None
    saved = loaded.cnnbench.saved
    assert saved["loss"]["name"] == "sparse_categorical_crossentropy" and saved["metrics"] == ["nll"]
    assert loaded.cnnbench.untrusted_source == str(tmp_path / "m.pt")  # load(trust_code=False)
    # the record rebuilds the saved loss (predict's, evaluate's for a file) and the saved built-in metrics
    assert recorded_loss(loaded.cnnbench, 3).name == record.loss.name
    assert loaded.cnnbench.evaluation_metrics() == ["nll"]
    torch.testing.assert_close(saving.predict(loaded, x, verbose=0)[0], saving.predict(h.model, x, verbose=0)[0])
