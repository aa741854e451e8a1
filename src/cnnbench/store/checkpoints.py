"""Where a study keeps each run's files beside study.db: its checkpoint while it trains, its saved model
when it is done, and a checkpoint that cannot be resumed, set aside under a name that says why.

    STUDY_DIR/checkpoints/KEY.pt                       a run in progress (removed when it finishes)
    STUDY_DIR/checkpoints/KEY.pt.corrupt-TIMESTAMP     one that could not be loaded, kept for a look
    STUDY_DIR/checkpoints/KEY.pt.foreign-TIMESTAMP     another run's (its tag is another run key)
    STUDY_DIR/models/KEY.pt                            the trained model (`save_models = true`)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal


def checkpoint_path(study_dir: str | os.PathLike, key: str) -> Path:
    """The checkpoint of run `key` while it trains (resumed from by the next `cnnbench run`)."""
    return Path(study_dir) / "checkpoints" / f"{key}.pt"


def model_path(study_dir: str | os.PathLike, key: str) -> Path:
    """The saved model of run `key` (written when the study saves models)."""
    return Path(study_dir) / "models" / f"{key}.pt"


def set_aside(checkpoint: str | os.PathLike, why: Literal["corrupt", "foreign"]) -> Path:
    """Rename a checkpoint that must not be resumed to `NAME.why-TIMESTAMP` beside it and return the new
    path: the run starts again, and the file stays for whoever wants to know what it was."""
    checkpoint = Path(checkpoint)
    aside = checkpoint.with_name(f"{checkpoint.name}.{why}-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(checkpoint, aside)
    return aside
