"""From stored runs to evidence.

- `frames`: the store as pandas frames (one row per run, one per run and epoch), the runs that are
  ranked, how a diverged run is scored, marginal rankings per axis, the learning-rate search.
- `compare`: the statistical protocol on any long-form frame (configurations × paired blocks):
  mean ranks, Friedman / Iman–Davenport, Nemenyi CD, Wilcoxon signed-rank with Holm's correction,
  effect sizes, the Bayesian signed-rank test with a ROPE, and a verdict in plain language.
- `aggregate`: rliable's aggregates across cells (IQM, mean, stratified-bootstrap intervals, probability of
  improvement, performance profiles).
- `names`: short display names for cells, distinct file-name stems.
- `evidence`: `compare_study(study_dirs)`: one or several study directories -> one comparison per
  (dataset, model) cell and one across cells (Demšar's protocol), with the caveats that apply.

See docs/statistics.md for the protocol, its assumptions and its citations.
"""

from .compare import compare
from .comparison import Comparison
from .evidence import Cell, StudyComparison, cell_table, compare_study, load_runs
from .frames import (
    axes_of,
    chosen_learning_rates,
    current_runs,
    final_runs,
    history_frame,
    marginal_rankings,
    runs_frame,
    scored,
    tuning_budget,
    tuning_table,
)
from .stat_tests import holm

__all__ = ["Comparison", "compare", "holm", "Cell", "StudyComparison", "compare_study", "cell_table", "load_runs",
           "axes_of", "chosen_learning_rates", "current_runs", "final_runs", "history_frame", "marginal_rankings",
           "runs_frame", "scored", "tuning_budget", "tuning_table"]
