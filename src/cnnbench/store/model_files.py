"""Save a trained model with its config in one file; load it back; predict class probabilities.

    save(model, "runs/x/model.pt", config={"loss": loss_spec, "class_names": names})
    model = load("runs/x/model.pt")            # rebuilt from the registry, weights restored, eval mode
    probs, labels = predict(model, x_uint8)    # [N, num_classes] probabilities, [N] int64 labels

The file is a plain dict readable with `torch.load(path, weights_only=True)`:
`{"format": "cnnbench-model", "version": 1, "config": "<JSON string>", "state_dict": {...}}`.
The JSON config holds `model` (the resolved model spec), `input_shape`, `num_outputs`, plus whatever
the caller passed in `config` (e.g. `loss`, `class_names`, `num_classes`, `dataset`, and
`input_normalization = {"mean": ..., "std": ...}` applied by `predict` to [0, 1] input). A model with
several outputs (trained by `fit` with `y` a dict) records `outputs` (their names), `loss` (one spec per
output), `loss_weights` and `num_classes` (per output); `predict` then returns dicts per output.

Loading runs no code from the file: the weights are read with `weights_only=True`, and a config that
names code (a `"package.module:attr"` model or loss, or a module to import) is refused unless the
caller passes `trust_code=True` (`cnnbench evaluate --trust-code`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import data, losses, models, registry
from ..engine import MultiOutputLoss, resolve_device, verbose_mode
from ..engine.record import recorded_loss
from ..errors import UserError
from ..models.record import TRUST_HINT, ModelRecord, attach, builtin_metrics, record_of
from ..registry import split_spec
from .files import atomic_write

FORMAT = "cnnbench-model"
VERSION = 1
_MODEL_KEYS = ("model", "input_shape", "num_outputs")


def _jsonable(value, where="config"):
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise UserError(f"cannot save {where} = {value!r}: not JSON-serialisable; use numbers, strings, lists or tables")


def model_config(model: nn.Module, config: dict | None = None) -> dict[str, Any]:
    """The config `save` stores: the model's build info (from `models.get`) plus the caller's `config`."""
    full = dict(config or {})
    record = record_of(model)
    built = record.built or record.saved or {}
    for key in _MODEL_KEYS:
        if key in built:
            full[key] = built[key]
        elif key not in full:
            raise UserError(
                f"cannot save this model: {key!r} is unknown (it was not built with cnnbench.models.get); "
                "pass config={'model': spec, 'input_shape': [C, H, W], 'num_outputs': n}"
            )
    module = _factory_module(full["model"])
    if module:
        full.setdefault("model_module", module)
    trained = record.loss  # set by fit
    if isinstance(trained, MultiOutputLoss) or (trained is not None and "loss" not in full):
        if isinstance(trained, MultiOutputLoss):
            # several outputs: their names in the trained order, a loss per output, the weights given (also
            # when the caller's config names the loss, as a study's does: load needs the outputs' order)
            full["outputs"] = list(trained.names)
            full["loss"] = {n: losses.resolve(trained.losses[n].user_loss) for n in trained.names}
            full.setdefault("loss_weights", dict(trained.given_weights))
            full.setdefault("num_classes", dict(trained.num_classes))
        else:
            full["loss"] = losses.resolve(trained.user_loss)
            full.setdefault("num_classes", trained.num_classes)
    given = builtin_metrics(record.metrics)  # fit's metrics, as Keras keeps them
    if given and "metrics" not in full:
        full["metrics"] = given
    return _jsonable(full)


def _factory_module(spec) -> str | None:
    """The module that registered a model outside cnnbench (imported again by `load`)."""
    try:
        name, _ = split_spec(spec)
        if name in models.REGISTRY:
            module = models.REGISTRY.entry(name).factory.__module__
            return None if module.startswith("cnnbench.") else module
    except UserError:
        pass
    return None


def save(model: nn.Module, path, config: dict | None = None) -> str:
    """Write the weights and the config to `path` atomically (`files.atomic_write`, fsync'ed)."""
    path = os.fspath(path)
    full = model_config(model, config)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "config": json.dumps(full, sort_keys=True), "state_dict": state}
    atomic_write(path, lambda f: torch.save(payload, f), fsync=True)
    return path


def read(path, map_location="cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`(config, state_dict)` of a saved model file, without building the model."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"model file {path!r} does not exist; give the path of a file written by cnnbench")
    if isinstance(map_location, (str, torch.device)):
        map_location = resolve_device(map_location)  # "cuda" without a GPU: say so, not "not a model file"
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read model file {path!r} ({type(e).__name__}); is it a cnnbench model file?") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path!r} is not a cnnbench model file (no {FORMAT!r} marker); "
                        "save models with cnnbench.store.model_files.save")
    if payload.get("version", 0) > VERSION:
        raise UserError(f"{path!r} was written by a newer cnnbench (format version {payload['version']}); "
                        "upgrade cnnbench")
    return json.loads(payload["config"]), payload["state_dict"]


def _build_spec(spec):
    """The spec to rebuild with: pretrained weights are not fetched again (the file has them all)."""
    if isinstance(spec, dict) and "weights" in spec:
        return {**spec, "weights": "none"}
    return spec


def _references(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The `(kind, "module:attr")` references a saved config names at its top level."""
    out = []
    specs = [("model", config.get("model"))]
    loss = config.get("loss")
    if config.get("outputs") and isinstance(loss, dict):  # several outputs: one loss spec per output
        specs += [("loss", loss.get(n)) for n in config["outputs"]]
    else:
        specs.append(("loss", loss))
    for kind, spec in specs:
        name = spec.get("name") if isinstance(spec, dict) else spec
        if isinstance(name, str) and ":" in name:
            out.append((kind, name))
    return out


def check_trusted(config: dict[str, Any], source: str) -> None:
    """Refuse, in one line, a saved config that would import code: a `module:attr` model or loss, or a
    `model_module` not imported yet (importing it runs its code). Built-in names pass."""
    for kind, ref in _references(config):
        registry.check_reference(ref, kind)
    module = config.get("model_module")
    if module and not isinstance(module, str):
        raise UserError(f"{source}: model_module must be a module name, got {module!r}")
    name = split_spec(config["model"])[0] if config.get("model") else ""
    # load imports model_module only for a model the registry does not know (yet)
    if module and module not in sys.modules and ":" not in name and name not in models.REGISTRY:
        raise UserError(f"{source}: model {name!r} was registered by module {module!r}, which loading this file "
                        f"would import (running its code); import it yourself first, or if you trust this file, "
                        f"{TRUST_HINT}")


def load(path, map_location="cpu", *, trust_code: bool = False) -> nn.Module:
    """Rebuild the model from the registry, restore its weights, put it in eval mode and record the saved
    config in the model's record (`model.cnnbench.saved`, `models.record`).

    A model file may come from anyone, and its config may name code: a `"package.module:attr"` model
    or loss, or the module that registered its model. Loading imports and calls such code only with
    `trust_code=True`; by default only built-in names (and modules already imported) are used, and a
    file naming code is refused with a UserError that names the reference."""
    config, state = read(path, map_location)
    source = os.fspath(path)
    with _trust(trust_code, source):
        if not trust_code:
            check_trusted(config, source)
        for key in _MODEL_KEYS:
            if key not in config:
                raise UserError(f"{source}: the config has no {key!r}; is it a cnnbench model file?")
        spec = config["model"]
        name, _ = split_spec(spec)
        if ":" not in name and name not in models.REGISTRY and config.get("model_module"):
            try:
                importlib.import_module(config["model_module"])
            except ImportError as e:
                raise UserError(f"model {name!r} was registered by module {config['model_module']!r}, which cannot "
                                f"be imported ({e}); install it or put it on PYTHONPATH") from None
        num_outputs = config["num_outputs"]
        if isinstance(num_outputs, dict) and set(config.get("outputs") or ()) == set(num_outputs):
            # in the trained order: the JSON config sorts its keys, and a MultiHead's last layer holds the
            # outputs' units side by side in the order it was built with (same shapes in either order)
            num_outputs = {n: num_outputs[n] for n in config["outputs"]}
        model = models.get(_build_spec(spec), input_shape=config["input_shape"], num_outputs=num_outputs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"the weights in {source!r} do not fit model {name!r} as this version builds it "
                        f"({str(e).splitlines()[0]})") from None
    if map_location is not None:
        model.to(map_location)
    model.eval()
    # predict/evaluate build the recorded loss later: the same trust applies to it (untrusted_source)
    attach(model, ModelRecord(built={k: config[k] for k in _MODEL_KEYS}, saved=config,
                              untrusted_source=None if trust_code else source))
    return model


def _trust(trust_code: bool, source: str):
    """Refuse every code reference met while building from `source`, nested options included."""
    return contextlib.nullcontext() if trust_code else registry.refusing_code(source, TRUST_HINT)


# --- predict -------------------------------------------------------------------------------------
def _images01(x) -> torch.Tensor:
    """`predict`'s images: a tensor or array, one image or N, uint8 pixels or floats in [0, 1] -> float32 in
    [0, 1] (unlike `engine.inputs.as_float01`, the training batch's scaling to channels-last, this checks)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise UserError(f"predict takes a tensor or numpy array of images, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise UserError(f"predict takes images shaped N x C x H x W, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise UserError(f"predict takes uint8 images or floats in [0, 1], got dtype {x.dtype}")
    return x.float()


def _normalizer(config):
    norm = config.get("input_normalization")
    if not norm:
        return None
    mean = torch.as_tensor(norm.get("mean", 0.0), dtype=torch.float32)
    std = torch.as_tensor(norm.get("std", 1.0), dtype=torch.float32)

    def shape(t):
        return t.reshape(1, -1, 1, 1) if t.dim() == 1 else t

    return shape(mean), shape(std)


def _probabilities(training_loss, outputs: torch.Tensor) -> torch.Tensor:
    if training_loss is not None:
        return training_loss.probabilities(outputs)
    if outputs.shape[1] == 1:
        p = torch.sigmoid(outputs[:, 0].float())
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(outputs.float(), dim=-1)


def outputs(model: nn.Module, x, batch_size: int = 256, device=None) -> torch.Tensor | dict[str, torch.Tensor]:
    """Raw model outputs `[N, num_outputs]` (float32, CPU) for images `x` (uint8 or float in [0, 1]),
    in eval mode, batch by batch, after the config's `input_normalization`; a dict of them by output
    name for a model with several outputs."""
    config = record_of(model).config
    x = _images01(x)
    expected = config.get("input_shape")
    if expected and list(x.shape[1:]) != list(expected):
        c, h, w = expected
        raise UserError(f"the model takes {c}x{h}x{w} images, got {'x'.join(map(str, x.shape[1:]))}; "
                        f"load the dataset at image_size {h} with {c} channel(s)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    norm = _normalizer(config)
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    model.to(device)
    was_training = model.training
    model.eval()
    chunks: list[Any] = []  # tensors, or dicts of tensors for a model with several outputs
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(device)
                if norm is not None:
                    xb = (xb - norm[0].to(device)) / norm[1].to(device)
                out = model(xb)
                chunks.append({k: v.float().cpu() for k, v in out.items()} if isinstance(out, dict)
                              else out.float().cpu())
    finally:
        model.train(was_training)
    if chunks and isinstance(chunks[0], dict):  # several outputs: a dict of [N, units] tensors
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    if chunks:
        return torch.cat(chunks)
    return torch.zeros(0, int(config.get("num_outputs") or 1))


def predict(model: nn.Module, x, batch_size: int | None = 256, *, verbose: int | str = "auto"
            ) -> tuple[torch.Tensor, torch.Tensor] | tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Class probabilities `[N, num_classes]` (float32, CPU) and labels `[N]` (int64) for images `x`
    (uint8 N x C x H x W, or float in [0, 1]). Probabilities follow the loss recorded in the model's
    config (or the one `fit` trained with); without one, softmax of the logits, or for a single output
    unit the sigmoid p as `[1 - p, p]`. `verbose` as Keras' `predict`: 0 silent, 1 or 2 one line when
    done, "auto" (the default) 1 on a terminal, else 2; `batch_size=None` is the default 256.

    Unlike Keras' `model.predict`, which returns the model's outputs (probabilities for a softmax
    model), this returns the pair (probabilities, labels)."""
    mode = verbose_mode(verbose)
    batch_size = 256 if batch_size is None else batch_size
    t0 = time.perf_counter()
    out = outputs(model, x, batch_size)
    if mode:  # Keras' progress bar as it looks when done: one line
        steps = -(-len(x) // batch_size)
        bar = f" [{'=' * 30}]" if mode == 1 else ""
        print(f"{steps}/{steps}{bar} - {time.perf_counter() - t0:.0f}s", flush=True)
    if isinstance(out, dict):  # several outputs: {name: probabilities}, {name: labels}
        training_loss = recorded_loss(record_of(model))
        probs = {k: (training_loss.losses[k].probabilities(v) if isinstance(training_loss, MultiOutputLoss)
                     else _probabilities(None, v)) for k, v in out.items()}
        return probs, {k: p.argmax(dim=1) for k, p in probs.items()}
    p = _probabilities(recorded_loss(record_of(model), out.shape[1]), out)
    return p, p.argmax(dim=1)


# --- evaluate on a dataset (what `cnnbench evaluate` prints) -------------------------------------------------
def evaluate_on_dataset(model, dataset=None, *, data_dir=None, batch_size: int = 256, device=None,
             trust_code: bool = False) -> dict[str, Any]:
    """Accuracy (and the recorded loss) of a saved model (a path or a loaded model) on a dataset's test
    set; `dataset` defaults to the one recorded in the model file's config. `trust_code` as in `load`."""
    if not isinstance(model, nn.Module):
        model = load(model, trust_code=trust_code)
    record = record_of(model)
    config = record.config
    spec = dataset if dataset is not None else config.get("dataset")
    if spec is None:
        raise UserError("this model file records no dataset; give one with --dataset (e.g. --dataset mnist)")
    if config.get("outputs"):
        raise UserError(f"this model has several outputs ({', '.join(config['outputs'])}) and a dataset has one "
                        "label per image; evaluate it in Python with cnnbench.evaluate(model, x, {output: labels})")
    ds = data.load(spec, data_dir=data_dir)
    out = outputs(model, ds.x_test, batch_size, device)
    assert isinstance(out, torch.Tensor)  # several outputs were refused above
    num_outputs = out.shape[1]
    expected = record.num_classes(num_outputs)
    if ds.num_classes != expected:
        raise UserError(f"the model predicts {expected} classes but dataset {ds.name!r} has {ds.num_classes}; "
                        "evaluate it on a dataset with the same classes")
    training_loss = recorded_loss(record, num_outputs)
    probs = _probabilities(training_loss, out)
    labels = probs.argmax(dim=1)
    result = {"dataset": ds.name, "images": len(ds.y_test),
              "accuracy": float((labels == ds.y_test).float().mean()) if len(ds.y_test) else float("nan")}
    if ds.num_classes > 5 and len(ds.y_test):
        top5 = probs.topk(5, dim=1).indices
        result["top5_accuracy"] = float((top5 == ds.y_test[:, None]).any(dim=1).float().mean())
    # rows: true class, columns: predicted class
    confusion = torch.zeros(ds.num_classes, ds.num_classes, dtype=torch.long)
    confusion.index_put_((ds.y_test.long(), labels.long()), torch.ones_like(labels, dtype=torch.long), accumulate=True)
    result["confusion_matrix"] = confusion.tolist()
    result["class_names"] = list(ds.class_names)
    if isinstance(training_loss, losses.TrainingLoss) and len(ds.y_test):  # one output (several refused above)
        with torch.no_grad():
            result["loss"] = float(training_loss(out, ds.y_test))
        result["loss_name"] = training_loss.name
    return result
