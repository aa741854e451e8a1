"""`fit`: Keras' `model.fit` for PyTorch image classifiers -- the inputs checked and made tensors, the
loss and the model built, the callbacks, then the loop (`loop.Trainer`)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .. import losses as losses_mod
from .. import models as models_mod
from .. import optim as optim_mod
from ..data import augment as augment_mod
from ..errors import UserError
from ..models.record import attached_record
from .callbacks import Callback, History, ProgressDisplay, build_callbacks, verbose_mode
from .evaluation import metric_plan
from .inference import heap_allocations
from .inputs import (
    check_whole_number,
    parse_validation_freq,
    precision_autocast,
    resolve_device,
    training_data,
)
from .loop import Trainer
from .outputs import build_training_loss, check_micro_batching


def fit(model: nn.Module | str | dict, x, y, *, loss="categorical_crossentropy", optimizer="adam",
        epochs: int = 1, batch_size: int | None = 32, validation_split: float | None = None,
        validation_data: tuple | None = None, callbacks: Iterable[Callback] = (), seed: int = 0,
        device: str | torch.device = "auto", num_classes: int | dict[str, int] | None = None,
        class_weight: dict | str | None = None, sample_weight=None, augmentation: dict | None = None,
        early_stopping: dict | bool | None = None, checkpoint: str | os.PathLike | None = None,
        micro_batch_size: int | None = None, precision: str = "fp32", verbose: int | str = "auto",
        loss_weights: dict[str, float] | None = None, metrics: Sequence[str] | dict | None = None,
        shuffle: bool | str = True, initial_epoch: int = 0, validation_freq: int | Sequence[int] = 1,
        steps_per_epoch: int | None = None, checkpoint_tag: str | None = None) -> History:
    """Train `model` on images `x` and labels `y`, Keras style; return the `History`.

    `model`: an `nn.Module` or a registry name/spec (built for the data's shape and the loss's output
    units, with `seed`). `loss` / `optimizer`: names, specs or objects. `x`: N×H×W, N×H×W×C or
    N×C×H×W (uint8 pixels are scaled to [0, 1]); `y`: integer labels. `validation_split` takes the
    last fraction of the data, before shuffling, as Keras does. `checkpoint`: a file written after
    every epoch; if it exists, training resumes from it. `checkpoint_tag` (e.g. a study's run key) is
    written into it: a checkpoint tagged for another run is set aside, as a damaged one is, and training
    starts over. `micro_batch_size`: accumulate the gradient of
    each batch over slices of this size (for batches that do not fit in memory). `precision="bf16"`:
    bfloat16 autocast for the model (faster; float32 is Keras' default). `verbose`: Keras' 0 (silent),
    1 (a progress bar per epoch), 2 (one line per epoch) or "auto" (the default: 1 on a terminal, else
    2). The trained model is `history.model`.

    Keras' epoch options: `shuffle` (True: a new order every pass over the data; False: the images in
    order; "batch": in order, each batch shuffled within itself), `initial_epoch` (epochs are numbered
    from it: `epochs - initial_epoch` epochs are trained and `history.epoch` starts there; a schedule
    counts from the first of them, as the optimizer is new), `validation_freq` (validate every n-th
    epoch, or at the 1-based epochs of a list; the `val_` lists of the history then hold only those
    epochs, as Keras'), `steps_per_epoch` (batches per epoch: an epoch takes the next batches of the
    running pass, which ends an epoch early when it runs out, as Keras' iterator over arrays).

    Several outputs (Keras' `compile(loss={...}, loss_weights={...})`): a model whose `forward` returns
    a dict of outputs, `y = {"digit": y1, "big": y2}` (and `validation_data=(x_val, {...})`), `loss` a
    dict per output (or one loss for all), `loss_weights` a dict (missing = 1.0); a registry name as
    `model` is built with one head per output (`models.MultiHead`). The loss trained on
    and logged as `loss` is Σ w_i · loss_i; the history also has each output's unweighted
    `<name>_loss` and `<name>_accuracy` (and `val_...`), as Keras names them.

    `metrics` (Keras' `metrics=[...]`): names in `cnnbench.metrics.REGISTRY` (`top5_accuracy`,
    `nll`, `ece`, `macro_f1`) or `"package.module:function"` taking `(y_true, probabilities)`; each is
    computed over every epoch's training batches (as trained, before each step, as Keras) and over the
    validation set, logged as `<name>` / `val_<name>` (per output `<output>_<name>`, from a dict
    `{output: [...]}`).
    """
    verbose = verbose_mode(verbose)
    batch_size = 32 if batch_size is None else batch_size  # Keras' default for None
    _check_options(epochs=epochs, batch_size=batch_size, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                   shuffle=shuffle, micro_batch_size=micro_batch_size)
    validation_freq = parse_validation_freq(validation_freq)
    dev = resolve_device(device)
    precision_autocast(dev, precision)  # validate before any work
    data = training_data(x, y, sample_weight=sample_weight, loss_weights=loss_weights,
                         validation_data=validation_data, validation_split=validation_split)
    x, y, sw, val = data.x, data.y, data.sample_weight, data.validation
    if batch_size < 1 or batch_size > x.shape[0]:
        raise UserError(f"batch_size {batch_size} must be between 1 and the {x.shape[0]} training images")
    labels = torch.cat([y, val[1]]) if val else y  # y has >= batch_size >= 1 labels here
    training_loss, num_classes = build_training_loss(loss, labels, data.names, num_classes=num_classes,
                                                     loss_weights=loss_weights, class_weight=class_weight)
    if micro_batch_size is not None and micro_batch_size < batch_size:
        check_micro_batching(training_loss)
    plan = metric_plan(metrics, training_loss)
    if class_weight is not None:
        assert num_classes is not None and not isinstance(num_classes, dict)  # refused above for several outputs
        cw = losses_mod.class_weights_to_sample_weights(y, class_weight, num_classes)
        sw = cw if sw is None else sw * cw

    model = _built(model, seed, tuple(x.shape[1:]), training_loss)
    model = model.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's overloads omit it
    assert isinstance(model, nn.Module)
    steps = math.ceil(x.shape[0] / batch_size) if steps_per_epoch is None else steps_per_epoch  # Keras' params
    opt = _optimizer(optimizer, model, batches=math.ceil(x.shape[0] / batch_size), steps=steps,
                     steps_per_epoch=steps_per_epoch, epochs=epochs, initial_epoch=initial_epoch,
                     batch_size=batch_size)
    augment = None
    if augmentation:
        augment = augment_mod.get(augmentation)
    x, y = x.to(dev), y.to(dev)
    sw = None if sw is None else sw.to(dev)
    val = None if val is None else (val[0].to(dev), val[1].to(dev))
    callbacks = build_callbacks(early_stopping, callbacks)
    if verbose:  # last: it shows the logs after the other callbacks' epoch ends
        callbacks.append(ProgressDisplay(verbose))
    trainer = Trainer(model, training_loss, opt, device=dev, seed=seed, batch_size=batch_size, epochs=epochs,
                      callbacks=callbacks, augment=augment, checkpoint=checkpoint,
                      micro_batch_size=micro_batch_size, precision=precision, metrics=plan,
                      shuffle=shuffle, initial_epoch=initial_epoch, validation_freq=validation_freq,
                      steps_per_epoch=steps_per_epoch, checkpoint_tag=checkpoint_tag)
    with heap_allocations():  # the steps' activations reuse heap pages (inference.py; same numbers)
        history = trainer.run(x, y, sw, val)
    history.params = {"verbose": verbose, "epochs": epochs, "steps": steps,  # Keras' three, then cnnbench's
                      "batch_size": batch_size, "num_classes": num_classes}
    record = attached_record(model)  # model.cnnbench
    record.loss = training_loss  # so evaluate()/predict()/save() need not be told the loss
    record.metrics = metrics  # evaluate() computes them too
    return history


def _check_options(*, epochs, batch_size, initial_epoch, steps_per_epoch, shuffle, micro_batch_size) -> None:
    check_whole_number(epochs, "epochs", minimum=0)
    check_whole_number(batch_size, "batch_size")
    check_whole_number(initial_epoch, "initial_epoch", minimum=0)
    if steps_per_epoch is not None:
        check_whole_number(steps_per_epoch, "steps_per_epoch")
    if shuffle not in (True, False, "batch") or not isinstance(shuffle, (bool, str)):
        raise UserError(f"shuffle must be True, False or 'batch' (Keras'), got {shuffle!r}")
    if micro_batch_size is not None:
        check_whole_number(micro_batch_size, "micro_batch_size")


def _built(model, seed: int, input_shape: tuple, training_loss) -> nn.Module:
    """`model` itself, or the registry's model it names, built with `seed` for the data and the loss."""
    if isinstance(model, nn.Module):
        return model
    torch.manual_seed(seed)
    # several outputs: a registry model gets one head per output, a user's model num_outputs={name: units}
    return models_mod.get(model, input_shape=input_shape, num_outputs=training_loss.out_features)


def _optimizer(optimizer, model: nn.Module, *, batches: int, steps: int, steps_per_epoch: int | None, epochs: int,
               initial_epoch: int, batch_size: int) -> torch.optim.Optimizer:
    if steps_per_epoch is not None and batches % steps_per_epoch and epochs > initial_epoch:
        # Keras warns at every such epoch ("Your input ran out of data"); once is enough to say why
        warnings.warn(f"steps_per_epoch={steps_per_epoch} does not divide the {batches} batches of a pass over the "
                      f"data; as Keras, an epoch that reaches the end of the pass stops there, with fewer steps",
                      stacklevel=3)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    # a schedule spans the epochs this fit trains
    return optim_mod.get(optimizer, params, steps_per_epoch=min(steps, batches), epochs=max(epochs - initial_epoch, 0),
                         batch_size=batch_size)
