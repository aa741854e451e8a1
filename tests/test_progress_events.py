"""What a study in progress reports: the running loss within an epoch ('batch' events, at most every
BATCH_EVENT_S seconds), and a race's runs announced round by round with their bound."""

from __future__ import annotations

from cnnbench.api import Study, StudyProgress
from cnnbench.runs import one_run as execution

TINY = {"name": "progress", "seeds": [0], "epochs": 2, "batch_size": 16, "dataset": "digits",
        "model": "digits_cnn"}


def test_a_run_reports_its_running_loss_within_each_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(execution, "BATCH_EVENT_S", 0.0)  # every batch (but an epoch's last)
    events = []
    Study.from_dict(TINY).run(tmp_path / "out", workers=1, report=False, progress=events.append, verbose=0)
    batches = [e for e in events if e["event"] == "batch"]
    from cnnbench import data

    n_train = data.train_size(data.load("digits").x_train.shape[0], 0.1)  # less the validation split
    steps = batches[0]["steps"]
    assert steps == -(-n_train // 16)  # the training part in batches of 16
    for epoch in (1, 2):
        seen = [e["batch"] for e in batches if e["epoch"] == epoch]
        assert seen == list(range(1, steps))  # every batch but the last, whose numbers the epoch event has
    assert all(e["logs"]["loss"] > 0 and 0 <= e["logs"]["accuracy"] <= 1 for e in batches)
    # the epoch's own event follows its batches, with the epoch's loss
    kinds = [e["event"] for e in events if e["event"] in ("batch", "epoch")]
    assert kinds.index("epoch") == steps - 1


def test_the_display_shows_how_far_an_epoch_is(tmp_path):
    shown = StudyProgress(live=True)
    shown.update({"event": "queued", "runs": [{"key": "k", "label": "loss=mse", "seed": 0, "epochs": 4}],
                  "at_most": 9})
    shown.update({"event": "started", "key": "k", "label": "loss=mse", "epochs": 4})
    shown.update({"event": "batch", "key": "k", "label": "loss=mse", "epoch": 2, "epochs": 4, "batch": 5,
                  "steps": 10, "logs": {"loss": 0.5, "accuracy": 0.75}})
    task = next(t for t in shown.progress.tasks if t.id == shown.run_tasks["k"])
    assert task.completed == 1.5 and "loss 0.5" in task.description and "acc 0.750" in task.description
    assert shown._runs() == "0/1 of at most 9 runs"
