"""A model's recorded loss, rebuilt from its record (`models.record.ModelRecord`, `model.cnnbench`): the loss
of the file it was loaded from, else the one `fit` trained it with -- under the trust `load` was given.

    recorded_loss(record_of(model), num_outputs)   # predict's and `cnnbench evaluate`'s
    evaluation_loss(record_of(model))              # evaluate's default
"""

from __future__ import annotations

from .. import losses
from ..models.record import TRUST_HINT, ModelRecord, attached_record, builtin_metrics, record_of
from .outputs import MultiOutputLoss, output_losses

__all__ = ["recorded_loss", "evaluation_loss", "ModelRecord", "record_of", "attached_record", "builtin_metrics",
           "TRUST_HINT"]


def recorded_loss(record: ModelRecord, num_outputs=None) -> losses.TrainingLoss | MultiOutputLoss | None:
    """The loss recorded for the model: its config's `loss` (rebuilt; with several outputs, one per output),
    else the one `fit` trained with, else None. `num_outputs`: the output units, for a config without
    `num_classes` (one output)."""
    config = record.config
    if config.get("loss") is None:
        return record.loss
    with record.trusting():
        if config.get("outputs"):
            names = list(config["outputs"])
            return output_losses(config["loss"], config.get("loss_weights") or {}, names,
                                 {n: int(config["num_classes"][n]) for n in names})
        return losses.adapt(config["loss"], record.num_classes(num_outputs))


def evaluation_loss(record: ModelRecord) -> losses.TrainingLoss | MultiOutputLoss | None:
    """`evaluate`'s default loss: the one `fit` trained with; for a loaded model with several outputs, its
    recorded losses (y is then a dict and needs them); else None (evaluate's own default)."""
    if record.loss is None and record.config.get("outputs") and record.config.get("loss") is not None:
        return recorded_loss(record)
    return record.loss
