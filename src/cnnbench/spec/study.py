"""The old module name of the spec (`cnnbench.spec.study`), kept while callers move to `cnnbench.spec`:
it only re-exports the package's public names (issue 22; remove once nothing imports it)."""

from . import (
    NAMED_KEYS,
    OPTIONAL_KEYS,
    OUTPUT_SCORES,
    RUN_DEFAULTS,
    RUN_KEYS,
    AnalysisSpec,
    EarlyStoppingSpec,
    RacingSpec,
    Run,
    RunSpec,
    StudyMeta,
    StudySpec,
    TuningSpec,
    build_callbacks,
    builtin_studies,
    canonical,
    import_callback,
    load,
    parse,
    parse_text,
    resolve_callback,
    resolve_targets,
    run_key,
    target_labels,
)

__all__ = [
    "OUTPUT_SCORES", "build_callbacks", "import_callback", "resolve_callback", "Run", "StudySpec", "canonical",
    "run_key", "builtin_studies", "load", "parse", "parse_text", "NAMED_KEYS", "OPTIONAL_KEYS", "RUN_DEFAULTS",
    "RUN_KEYS", "AnalysisSpec", "EarlyStoppingSpec", "RacingSpec", "RunSpec", "StudyMeta", "TuningSpec",
    "resolve_targets", "target_labels",
]
