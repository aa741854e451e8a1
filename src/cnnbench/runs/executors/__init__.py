"""Where runs execute: `local` (worker processes on this machine) and `ray` (a Ray cluster).

An executor only decides where and how many runs train at once; what happens to one run (data ->
engine -> store) is `cnnbench.runs.one_run.run_task`, the same under every executor.
"""
