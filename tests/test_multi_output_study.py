"""Several outputs in study files (issue 13, item 3): `targets` (each output's labels, from the class
label or a lookup table of it), a loss per output, `loss_weights`; per-epoch Keras names in the store,
per-output test metrics, ranking on one of them, resume, bad specs, unchanged keys."""

from __future__ import annotations

import json

import pytest
from study_helpers import BIG, TWO_OUTPUT_SPEC, interrupt_while_recording, study_rows

from cnnbench import Study
from cnnbench.errors import UserError

SPEC = {**TWO_OUTPUT_SPEC, "name": "mo-tiny", "seeds": [0]}
_rows = study_rows


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp("mo") / "out"
    study = Study.from_dict(SPEC)
    return study, study.run(out, workers=1), out


def test_a_study_with_two_outputs_runs_and_records_each_output(ran):
    _, result, out = ran
    assert result.ran == 1 and not result.failed
    names = {n for (n,) in _rows(out, "SELECT DISTINCT name FROM history_metrics")}
    assert {"digit_loss", "big_loss", "digit_accuracy", "big_accuracy", "val_digit_loss", "val_big_loss",
            "val_digit_accuracy", "val_big_accuracy"} <= names
    (test_loss, test_acc, custom), = _rows(out, "SELECT test_loss, test_acc, custom_metrics FROM runs")
    custom = json.loads(custom)
    assert test_acc is None  # no single accuracy: each output has its own
    # the run's loss is the weighted sum of the outputs' losses, as Keras'
    assert test_loss == pytest.approx(custom["test_digit_loss"] + 0.5 * custom["test_big_loss"], rel=1e-5)
    for output in ("digit", "big"):
        for score in ("accuracy", "loss", "nll", "ece", "macro_f1"):
            assert custom[f"test_{output}_{score}"] is not None
            assert custom[f"val_{output}_{score}"] is not None
    assert 0.5 <= custom["test_big_accuracy"] <= 1.0
    assert custom["test_big_top5_accuracy"] is None  # two classes


def test_results_and_report_rank_on_a_per_output_metric(ran):
    study, result, out = ran
    df = study.results(out)
    assert df["test_digit_accuracy"].iloc[0] > 0.1 and "test_big_loss" in df
    assert result.report is not None and result.report.exists()
    assert "test_digit_accuracy" in result.report.read_text(encoding="utf-8")
    from cnnbench import analysis, metrics

    # named and shown as the single-output metric it is: an accuracy in percent, a loss minimised, as is;
    # the study's catalog knows its outputs' scores (the spec's and the one the analysis builds from the store)
    catalogs = [study.spec.metrics, analysis.compare_study(out).catalog]
    for catalog in catalogs:
        accuracy, loss = catalog.get("test_digit_accuracy"), catalog.get("val_big_loss")
        assert (accuracy.label, accuracy.percent, accuracy.higher_is_better) == ("test digit accuracy", True, True)
        assert (loss.label, loss.percent, loss.higher_is_better) == ("validation big loss", False, False)
    with pytest.raises(UserError, match="unknown metric 'test_digit_accuracy'"):
        metrics.get("test_digit_accuracy")  # no process-wide state: the built-ins alone do not know it
    ranking = (result.report.parent / "ranking.md").read_text(encoding="utf-8")
    assert "test digit accuracy (%): mean ± std" in ranking


def test_a_resume_reruns_nothing_done(ran):
    study, _, out = ran
    again = study.run(out, workers=1)
    assert again.ran == 0 and again.already_finished == 1


def test_an_interrupted_run_resumes_from_its_checkpoint_with_the_same_numbers(ran, tmp_path, monkeypatch):
    study, _, full = ran
    interrupt_while_recording(study, tmp_path / "out", monkeypatch)  # after epoch 0's checkpoint
    assert list((tmp_path / "out" / "checkpoints").glob("*.pt"))
    resumed = study.run(tmp_path / "out", workers=1)
    assert resumed.ran == 1 and not resumed.failed
    sql = "SELECT test_loss, custom_metrics FROM runs"
    assert _rows(tmp_path / "out", sql) == _rows(full, sql)


def test_single_output_keys_are_unchanged_by_the_feature():
    plain = {"name": "one", "seeds": [0], "epochs": 1, "dataset": "digits", "model": "digits_cnn"}
    config = Study.from_dict(plain).runs[0].config
    assert "targets" not in config and "loss_weights" not in config


def test_target_written_either_way_is_the_same_run():
    a = Study.from_dict({**SPEC, "targets": {"digit": "label", "big": {"from": "label", "map": BIG}}})
    b = Study.from_dict({**SPEC, "targets": {"digit": {"from": "label"}, "big": {"from": "label", "map": BIG}}})
    assert a.runs[0].key == b.runs[0].key


@pytest.mark.parametrize("change, words", [
    ({"loss": {"digit": "sparse_categorical_crossentropy", "small": "binary_crossentropy"}}, "targets has"),
    ({"loss_weights": {"digit": 1.0, "bog": 0.5}}, "'bog'"),
    ({"targets": None}, "no targets"),
    ({"targets": {"digit": "la bel"}}, "targets: output 'digit'"),
    ({"targets": {"digit": "label", "big": {"from": "label", "map": [0, 1, -1]}}}, "map"),
    ({"analysis": {"metric": "test_acc"}}, "test_digit_accuracy"),
    ({"class_weight": "balanced"}, "sample_weight"),
])
def test_bad_specs_raise_one_line_user_errors(change, words):
    spec = {**SPEC, **change}
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(UserError) as e:
        Study.from_dict(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_map_not_one_label_per_class_is_refused_before_training(tmp_path):
    spec = {**SPEC, "targets": {"digit": "label", "big": {"from": "label", "map": [0, 1]}}}
    with pytest.raises(UserError, match="map has 2 entries but the dataset has 10 classes"):
        Study.from_dict(spec).run(tmp_path / "out", workers=1)
    assert not (tmp_path / "out" / "study.db").exists() or not _rows(tmp_path / "out", "SELECT key FROM runs")


def test_a_user_model_gets_its_heads_as_num_outputs_and_returns_a_dict(tmp_path, monkeypatch):
    (tmp_path / "two_heads_ref.py").write_text(
        "import torch\n"
        "class TwoHeads(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs):\n"
        "        super().__init__()\n"
        "        n = input_shape[0] * input_shape[1] * input_shape[2]\n"
        "        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(n, u) for k, u in num_outputs.items()})\n"
        "    def forward(self, x):\n"
        "        return {k: h(x.flatten(1)) for k, h in self.heads.items()}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {**SPEC, "epochs": 1, "model": "two_heads_ref:TwoHeads"}
    result = Study.from_dict(spec).run(tmp_path / "out", workers=1)
    assert result.ran == 1 and not result.failed
    (custom,), = _rows(tmp_path / "out", "SELECT custom_metrics FROM runs")
    assert json.loads(custom)["test_big_accuracy"] > 0


def test_a_saved_multi_output_model_loads_and_predicts_each_output(tmp_path):
    import cnnbench.store.model_files as saving
    from cnnbench.data import load

    study = Study.from_dict({**SPEC, "epochs": 1, "save_models": True})
    study.run(tmp_path / "out", workers=1)
    model = saving.load(next((tmp_path / "out" / "models").glob("*.pt")))
    x = load({"name": "digits"}).x_test[:5]
    out = saving.outputs(model, x)
    assert set(out) == {"digit", "big"} and out["digit"].shape == (5, 10) and out["big"].shape == (5, 1)


def test_early_stopping_monitors_what_the_run_logs():
    """Keras' EarlyStopping monitors any logged value: with outputs, `val_<output>_accuracy` (maximised)
    or `_loss`; with custom metrics, theirs. A name this run does not log is refused before training,
    with the names it does log."""
    es = {"patience": 1, "restore_best_weights": True}
    study = Study.from_dict({**SPEC, "validation_split": 0.2,
                             "early_stopping": {**es, "monitor": "val_digit_accuracy"}})
    assert study.runs[0].config["early_stopping"]["monitor"] == "val_digit_accuracy"
    with pytest.raises(UserError, match=r"'val_accuracy' is not logged by this run; did you mean "
                       r"'val_\w+_accuracy'\? use one of val_loss, loss, val_digit_loss"):
        Study.from_dict({**SPEC, "validation_split": 0.2, "early_stopping": {**es, "monitor": "val_accuracy"}})
    plain = {"name": "one", "seeds": [0], "epochs": 1, "dataset": "digits", "model": "digits_cnn",
             "validation_split": 0.2, "metrics": ["macro_f1"]}
    assert Study.from_dict({**plain, "early_stopping": {"monitor": "val_macro_f1"}}).runs
    with pytest.raises(UserError, match="'val_digit_accuracy' is not logged by this run"):
        Study.from_dict({**plain, "early_stopping": {"monitor": "val_digit_accuracy"}})
    from cnnbench.metrics import monitor_mode

    assert monitor_mode("val_digit_accuracy") == "max" and monitor_mode("val_big_loss") == "min"
