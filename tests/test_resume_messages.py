"""What `train --resume` says and does with a finished run: it is finished and how to extend it,
nothing rewritten; an extension keeps the history of commands and plots the LR as recorded; a
refusal shows the value the run used, never an unset field's None."""
import json
from pathlib import Path

import yaml

from densekit.cli import main
from densekit.tracking.plots import plot_lr
from densekit.tracking.runs import command_history

# no --lr: the run trains at sgd's default 0.1, which its config.yaml records as lr None
TINY = ["--model", "densenet-bc-40-k12", "--model-arg", "block_config=[3,3]", "--model-arg", "growth_rate=8",
        "--dataset", "digits", "--batch-size", "64", "--val-split", "200", "--workers", "0", "--embeddings", "8",
        "--no-plots"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def test_a_finished_run_is_left_as_it_is_and_an_extension_keeps_its_history(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
    run = tmp_path / "r"
    before = snapshot(run)
    capsys.readouterr()

    # finished: one line that says so and how to extend it; not one byte of the run folder changes
    for quiet in ([], ["--quiet"]):
        assert main(["train", "--resume", str(run), *quiet]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"{run}: finished after 2 epoch(s), nothing to resume and nothing changed; to train it "
                       f"longer: densekit train --resume {run} --epochs N (N above 2)"], out
    assert snapshot(run) == before          # no second test pass, no tensorboard/00002 embedding set

    # a refusal shows what the run used: sgd's 0.1, not the unset field
    assert main(["train", "--resume", str(run), "--lr", "0.5"]) == 1
    assert "--lr 0.5 contradicts the run's lr 0.1 (sgd's default)" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--lr", "0.1", "--quiet"]) == 0   # the same LR: no contradiction
    capsys.readouterr()

    # extended: both commands are kept, each with where it started and its plan
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    resolved = yaml.safe_load((run / "config.yaml").read_text())["resolved"]
    history = command_history(resolved)
    assert [(c["epoch"], c["epochs"]) for c in history] == [(0, 2), (2, 3)]
    assert "--resume" not in history[0]["command"] and "--epochs 3" in history[1]["command"]
    assert main(["runs", "show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "  commands:\n    from epoch 0: " in shown and "    from epoch 2: " in shown

    # the LR plot draws the rates the run followed (its recorded ones), not the final settings' schedule
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (ax,) = plot_lr(metrics, yaml.safe_load((run / "config.yaml").read_text()), 0.1, tmp_path / "lr.png", history)
    assert list(ax["lines"]) == ["at each epoch's end (recorded)"]
    assert ax["lines"]["at each epoch's end (recorded)"] == ([1, 2, 3], [m["lr"] for m in metrics])
    (ax,) = plot_lr(metrics[:2], {"epochs": 2, "schedule": "onecycle"}, 0.1, tmp_path / "lr.png", history[:1])
    assert set(ax["lines"]) == {"onecycle schedule", "at each epoch's end"}   # one plan: its curve as before


def test_resume_messages_show_what_an_unset_field_meant():
    import pytest

    from densekit import DensekitError, TrainConfig
    run = TrainConfig(dataset="digits", optimizer="adam")
    _, note = run.resume_overrides({"time_budget": "5m"})
    assert "extended: time_budget none (train for --epochs) -> 300.0" in note
    with pytest.raises(DensekitError, match=r"--clip-grad 1\.0 contradicts the run's clip_grad none \(no clipping\)"):
        run.resume_overrides({"clip_grad": 1.0})
    with pytest.raises(DensekitError, match=r"--lr 0\.1 contradicts the run's lr 0\.001 \(adam's default\)"):
        run.resume_overrides({"lr": 0.1})
    assert run.resume_overrides({"lr": 1e-3})[1] == "resuming with the run's own settings"
