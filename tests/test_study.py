"""Study spec -> runs: expansion, explicit defaults, stable keys, one-line errors with paths."""

import pytest

from cnnbench import spec as study
from cnnbench.errors import UserError

BASE = """
name = "t"
seeds = [0, 1]
epochs = 2
dataset = "digits"
[grid]
loss = ["categorical_crossentropy", "mse", { name = "categorical_hinge" }]
optimizer = ["adam", { name = "sgd", learning_rate = 0.01, momentum = 0.9 }]
"""


def test_grid_expands_to_product_of_axes_and_seeds():
    s = study.parse_text(BASE)
    assert len(s.runs) == 3 * 2 * 2
    assert len({r.key for r in s.runs}) == 12
    labels = {r.label for r in s.runs}
    assert "loss=mse · optimizer=adam" in labels
    assert "loss=categorical_hinge · optimizer=sgd(learning_rate=0.01, momentum=0.9)" in labels


def test_config_is_fully_resolved_and_key_independent_of_spelling():
    a = study.parse_text('name = "a"\nloss = "mse"\noptimizer = "adam"\nepochs = 2\n')
    b = study.parse_text('name = "b"\nloss = "MeanSquaredError"\noptimizer = { name = "Adam" }\nepochs = 2\n')
    assert a.runs[0].key == b.runs[0].key
    cfg = a.runs[0].config
    assert cfg["loss"]["name"] == "mean_squared_error"
    assert "learning_rate" in cfg["optimizer"]  # defaults made explicit
    assert cfg["epochs"] == 2 and cfg["seed"] == 0 and cfg["batch_size"] == 32


def test_key_independent_of_how_a_number_is_written():
    def key(extra):
        return study.parse_text(f'name = "a"\nepochs = 2\n{extra}\n').runs[0].key

    assert key("") == key("label_noise = 0") == key("label_noise = 0.0")
    assert key("validation_split = 0") == key("validation_split = 0.0")
    assert key('class_weight = { "0" = 1 }') == key('class_weight = { "0" = 1.0 }')
    assert key('loss = { name = "categorical_focal_crossentropy", gamma = 3 }') == \
        key('loss = { name = "categorical_focal_crossentropy", gamma = 3.0 }')
    assert key("") != key("label_noise = 0.1")
    # an empty early_stopping table is early stopping with its defaults, not none
    config = study.parse_text('name = "a"\nearly_stopping = {}\n').runs[0].config
    assert config["early_stopping"]["monitor"] == "val_loss"


def test_explicit_runs_cross_the_grid():
    s = study.parse_text('name = "t"\n[grid]\noptimizer = ["adam", "sgd"]\n'
                         '[[runs]]\nmodel = "digits_cnn"\n[[runs]]\nmodel = "digits_cnn"\nepochs = 3\n')
    assert len(s.runs) == 4
    assert sorted(r.config["epochs"] for r in s.runs) == [3, 3, 10, 10]


@pytest.mark.parametrize("text, expected", [
    ('name = "t"\nepoch = 3\n', "epoch: unknown key 'epoch' for a study; did you mean 'epochs'?"),
    ('name = "t"\nepochs = -1\n', "epochs: Input should be greater than or equal to 1"),
    ('name = "t"\n[grid]\nloss = ["mse", "categorical_crossentrpy"]\n',
     "grid.loss[1]: unknown loss 'categorical_crossentrpy'; did you mean 'categorical_crossentropy'?"),
    ('name = "t"\noptimizer = "adamm"\n', "optimizer: unknown optimizer 'adamm'; did you mean 'adam'?"),
    ('name = "t"\nmodel = "no_such_net"\n', "model: unknown model 'no_such_net'"),
    ('name = "t"\ndataset = "mnistt"\n', "dataset: unknown dataset 'mnistt'; did you mean 'mnist'?"),
    ('name = "t"\n[grid]\nbatchsize = [1]\n',
     "grid.batchsize: unknown key 'batchsize' for a run; did you mean 'batch_size'?"),
    ('name = "t"\n[grid]\nloss = []\n', "grid.loss: must be a non-empty list"),
    ('name = "t"\nearly_stopping = { patience = -2 }\n',
     "early_stopping.patience: Input should be greater than or equal to 0"),
    ('name = "t"\nearly_stopping = { patiense = 2 }\n', "early_stopping.patiense: unknown key"),
    ('name = "t"\n[[runs]]\nlos = "mse"\n', "runs[0].los: unknown key 'los' for a run; did you mean 'loss'?"),
    ('name = "t"\nvalidation_split = 1.5\n', "validation_split: Input should be less than 1"),
    # a whole float is taken for a whole number (docs/CONTRACTS.md), any other float refused
    ('name = "t"\nepochs = 1.5\n', "epochs: must be a whole number"),
    ('name = "t"\n[grid]\nbatch_size = [32, 64.5]\n', "grid.batch_size[1]: must be a whole number"),
    ('name = "t"\nepochs = "10"\n', "epochs: must be a whole number, not a string; write 10 without quotes"),
    ('name = "t"\nseeds = [0, -1]\n', "seeds[1]: Input should be greater than or equal to 0"),
    ('name = "t"\n[tuning]\nseeds = [1.5]\n', "tuning.seeds[0]: must be a whole number"),
    ('name = "t" x', "invalid TOML"),
    ('epochs = 2\n', "name: Field required"),
    ('name = "t"\n[analysis]\nmetric = "tst_acc"\n',
     "analysis.metric: unknown metric 'tst_acc'; did you mean 'test_acc'?"),
    ('name = "t"\n[analysis]\nmetric = "train_nll"\n', "analysis.metric: unknown metric 'train_nll'"),
    ('name = "t"\n[analysis]\nmetric = "epochs_to_target"\n', "analysis: metric 'epochs_to_target' needs a target"),
    ('name = "t"\n[analysis]\nalpha = 1.5\n', "analysis.alpha: Input should be less than 1"),
    ('name = "t"\n[analysis]\nrope = -0.1\n', "analysis.rope: Input should be greater than or equal to 0"),
    ('name = "t"\n[analysis]\ntarget_accuracy = 98\n',
     "analysis.target_accuracy: Input should be less than or equal to 1"),
    ('name = "t"\n[analysis]\ncells = ["datset"]\n',
     "analysis.cells: unknown cell key 'datset' for a run; did you mean 'dataset'?"),
    ('name = "t"\n[analysis]\nmetrik = "test_acc"\n', "analysis.metrik: unknown key"),
    ('name = "t"\nseeds = [0, 1]\n[tuning]\nreuse = false\nseeds = [1, 2]\n',
     "tuning.seeds: seeds [1] are also study seeds; with reuse = false the search seeds must differ"),
])
def test_bad_specs_give_one_line_errors_naming_the_place(text, expected):
    with pytest.raises(UserError) as e:
        study.parse_text(text, source="s.toml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("s.toml: ")
    assert expected in msg


def test_builtin_default_study_is_large_enough():
    s = study.load(None)
    losses = {r.config["loss"]["name"] for r in s.runs}
    opts = {r.config["optimizer"]["name"] for r in s.runs}
    seeds = {r.seed for r in s.runs}
    assert len(losses) >= 6 and len(opts) >= 4 and len(seeds) >= 2
    assert {r.config["dataset"]["name"] for r in s.runs} == {"digits"}


def test_every_builtin_study_parses():
    for name in study.builtin_studies():
        assert study.load(name).runs, name


def test_unknown_study_name_suggests_builtin():
    with pytest.raises(UserError, match="did you mean 'default'"):
        study.load("defualt")


def test_analysis_section_is_validated_and_changes_no_run_key():
    plain = study.parse_text(BASE)
    s = study.parse_text(BASE + '[analysis]\nmetric = "test_nll"\ntarget_accuracy = 0.98\nalpha = 0.01\n'
                                'rope = 0.01\ncells = ["dataset", "model"]\n')
    a = s.meta.analysis
    assert (a.metric, a.target_accuracy, a.alpha, a.rope, a.cells) == (
        "test_nll", 0.98, 0.01, 0.01, ["dataset", "model"])
    assert [r.key for r in s.runs] == [r.key for r in plain.runs]
    assert all("analysis" not in r.config for r in s.runs)
    default = plain.meta.analysis
    assert (default.metric, default.target_accuracy, default.alpha, default.rope, default.cells) == \
        ("test_acc", None, 0.05, None, ["dataset"])


TUNED = 'name = "t"\nseeds = [0, 1]\nepochs = 2\n[tuning]\nlearning_rates = [0.1, 0.01]\n'


def test_tuning_reuse_false_keeps_search_seeds_apart_from_study_seeds():
    reused = study.parse_text(TUNED)
    assert {r.seed for r in reused.runs} == {0}  # today's behaviour: the first study seed
    fresh = study.parse_text(TUNED + "reuse = false\n")
    assert {r.seed for r in fresh.runs} == {2}  # max(study seeds) + 1
    chosen = {fresh.runs[0].label: 0.1}
    finals = fresh.final_runs(chosen)
    assert {r.seed for r in finals} == {0, 1}
    assert not {r.key for r in finals} & {r.key for r in fresh.runs}  # no search run is a final run
    given = study.parse_text(TUNED + "reuse = false\nseeds = [7, 8]\n")
    assert {r.seed for r in given.runs} == {7, 8}
    # reuse = true is the default: the same run keys as without it
    assert [r.key for r in study.parse_text(TUNED + "reuse = true\n").runs] == [r.key for r in reused.runs]
    assert study.parse_text(TUNED + "reuse = true\n").final_runs(chosen)[0].key in {r.key for r in reused.runs}


def test_the_spec_depends_only_on_the_registries():
    """issue 22: parsing a study imports no engine and no store (and no torch until a value is resolved)."""
    import subprocess
    import sys

    code = ("import sys, cnnbench.spec; loaded = [m for m in sys.modules if m.startswith(('cnnbench.engine', "
            "'cnnbench.store', 'cnnbench.runs', 'torch'))]; assert not loaded, loaded; "
            "cnnbench.spec.parse_text('name = \"x\"'); "
            "loaded = [m for m in sys.modules if m.startswith(('cnnbench.engine', 'cnnbench.runs'))]; "
            "assert not loaded, loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
