"""The study as declared: the TOML/dict schema, its validation and coercion, the grid of runs and their keys.

Depends only on the registries (losses, optim, models, data, metrics): nothing here trains or stores.

    coerce     the one coercion rule for a study's values
    schema     the pydantic models of a study file (RunSpec, TuningSpec, RacingSpec, AnalysisSpec, StudyMeta)
    messages   the one-line messages for a key a study does not have
    families   the registry modules, imported when a value is first resolved
    resolve    written values -> resolved configs, through the registry each run key names
    checks     the rules across a run's keys and across the study
    grid       explicit runs x grid x seeds, run keys, Run and StudySpec
    targets    several outputs: their targets and per-output labels
    callbacks  callbacks a study names: checked, built
    parse      load, parse_text, parse, the built-in studies
"""

from ..metrics import OUTPUT_SCORES
from .callbacks import build_callbacks, import_callback, resolve_callback
from .grid import Run, StudySpec, canonical, run_key
from .parse import builtin_studies, load, parse, parse_text
from .schema import (
                     NAMED_KEYS,
                     OPTIONAL_KEYS,
                     RUN_DEFAULTS,
                     RUN_KEYS,
                     AnalysisSpec,
                     EarlyStoppingSpec,
                     RacingSpec,
                     RunSpec,
                     StudyMeta,
                     TuningSpec,
)
from .targets import resolve_targets, target_labels

__all__ = ["OUTPUT_SCORES", "build_callbacks", "import_callback", "resolve_callback", "Run", "StudySpec", "canonical",
           "run_key", "builtin_studies", "load", "parse", "parse_text", "NAMED_KEYS", "OPTIONAL_KEYS",
           "RUN_DEFAULTS", "RUN_KEYS", "AnalysisSpec", "EarlyStoppingSpec", "RacingSpec", "RunSpec", "StudyMeta",
           "TuningSpec", "resolve_targets", "target_labels"]
