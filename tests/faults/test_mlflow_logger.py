"""`Task.mlflow` (the CLI's `--mlflow URI`): one MLflow run per cnnbench run, in a local file store.
Skipped where MLflow is not installed (pip install mlflow-skinny)."""

from __future__ import annotations

import pytest

mlflow = pytest.importorskip("mlflow")


def test_each_run_is_an_mlflow_run_with_params_epochs_final_metrics_and_tags(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from cnnbench import spec as study
    from cnnbench.runs import plan as planning
    from cnnbench.runs import study_run

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()  # file:///...
    spec = study.parse_text('name = "tracked"\nseeds = [0, 1]\nepochs = 2\nbatch_size = 64\n', "s.toml")
    plan = planning.plan(spec, tmp_path / "st")
    study_run.run_plan(plan, data_dir=None, device="cpu", workers=1, mlflow=uri)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tracked")
    found = client.search_runs([exp.experiment_id])
    assert len(found) == 2
    from cnnbench.store.db import Store

    store = Store.open(tmp_path / "st")
    for r in found:
        key = r.data.tags["run_key"]
        stored = store.run(key)
        assert r.info.status == "FINISHED" and r.data.tags["status"] == "done"
        assert r.data.tags["study"] == "tracked" and r.data.tags["seed"] == str(stored["config"]["seed"])
        assert r.data.tags["label"] == stored["label"]
        assert r.data.params["optimizer.name"] == "adam" and r.data.params["optimizer.learning_rate"] == "0.001"
        assert r.data.params["epochs"] == "2" and r.data.params["dataset.name"] == "digits"
        losses = client.get_metric_history(r.info.run_id, "loss")
        assert [m.step for m in losses] == [0, 1]
        assert [m.value for m in losses] == [h["train_loss"] for h in store.history(key)]
        assert r.data.metrics["test_acc"] == stored["test_acc"] and r.data.metrics["params"] == stored["params"]
    store.close()
