"""`cnnbench run` below the API, in two calls: `plan(study, ...)` checks a study against its data and
its directory and writes nothing (runs/plan.py); `run_plan(plan, ...)` runs what is missing under the
study lock (runs/study_run.py). This module only gathers their public names in one place.
"""

from __future__ import annotations

from .plan import FINISHED, Plan, check_data_dir, check_run, plan, stored_statuses, study_dir_for
from .study_run import StudyRun, announce, race_meta, run_plan, study_lock

__all__ = ["FINISHED", "Plan", "StudyRun", "announce", "check_data_dir", "check_run", "plan", "race_meta",
           "run_plan", "stored_statuses", "study_dir_for", "study_lock"]
