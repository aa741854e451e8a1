"""Datasets for cnnbench: the registry, loading into memory (uint8 N×C×H×W), splits, augmentation.

    from cnnbench import data
    ds = data.load("mnist", data_dir=None)          # Dataset(x_train, y_train, x_test, y_test, ...)
    data.resolve({"name": "emnist", "split": "letters"})
    x_tr, y_tr, x_val, y_val = data.split_validation(ds.x_train, ds.y_train, 0.1, mode="keras")
    aug = data.augment.get({"horizontal_flip": True}); xb = aug(xb, generator)

See docs/datasets.md for every dataset, its options and where its files go.
"""

from . import augment
from . import datasets as _datasets  # noqa: F401  (registers the built-in datasets)
from . import imagefolder as _imagefolder  # noqa: F401  (registers "imagefolder")
from .loading import describe, load, resolve
from .sources import REGISTRY, Dataset, Source, default_data_dir
from .splits import limit, split_validation, stratified_indices, train_size

__all__ = [
    "REGISTRY",
    "Dataset",
    "Source",
    "augment",
    "default_data_dir",
    "describe",
    "limit",
    "load",
    "resolve",
    "split_validation",
    "train_size",
    "stratified_indices",
]
