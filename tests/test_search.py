"""`densekit sweep --search optuna`: a pruned search on digits, killed and continued from its SQLite study."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import densekit
from densekit.cli import main
from densekit.workflows.search import ReportToOptuna, parse_space

SEARCH = ["sweep", "--search", "optuna", "--trials", "4", "--space", "lr=log(1e-4,0.5)", "--space", "growth_rate=int(4,8)",
          "--model", "densenet-bc-40-k12", "--model-arg", "block_config=[2,2]", "--dataset", "digits", "--epochs", "3",
          "--batch-size", "64", "--val-split", "200", "--workers", "0", "--no-tensorboard", "--no-plots", "--name", "s"]


def test_a_killed_search_continues_from_its_study_and_ranks_on_validation(tmp_path, capsys):
    args = [*SEARCH, "--out", str(tmp_path)]
    sweep = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(densekit.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "densekit", *args, "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (sweep / "trial-001" / "checkpoints" / "last.pt").exists():   # the second trial is under way
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert main([*args, "--json"]) == 0          # the same command continues the search
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{sweep / 'study.db'}")
    states = optuna.trial.TrialState
    cut = study.trials[1]
    again = [t for t in study.trials if t.user_attrs.get("requeued_from") == 1]
    assert cut.state == states.FAIL and len(again) == 1 and again[0].params == cut.params
    assert again[0].user_attrs["run"] == str(sweep / "trial-001")             # its run folder, resumed
    counted = [t for t in study.trials if t.number != 1 and t.state in (states.COMPLETE, states.PRUNED)]
    assert len(counted) == 4 and len(rows) == 4 and len(study.trials) == 5
    for r in rows:     # every trial an ordinary run folder; pruned ones stopped before their last epoch
        epochs = [json.loads(line)["epoch"] for line in (Path(r["path"]) / "metrics.jsonl").read_text().splitlines()]
        assert epochs == ([1, 2, 3] if r["status"] == "finished" else epochs[:2]) and r["status"] in ("finished", "pruned")
    finished = [r for r in rows if r["status"] == "finished"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and rows[0] is not None and "command" in rows[0]
    assert rows[0]["rank_value"] == max(r["rank_value"] for r in finished) == study.best_value   # validation only
    assert f"--lr {rows[0]['values']['lr']}" in rows[0]["command"] and "--model-arg growth_rate=" in rows[0]["command"]
    assert (sweep / "search.png").stat().st_size > 10_000
    assert main(["runs", str(sweep)]) == 0 and len(capsys.readouterr().out.splitlines()) == 1 + 4


def test_the_pruner_stops_a_trial_through_the_trainer_callback(runs_dir):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.99))
    trial = study.ask()
    report = ReportToOptuna(trial, "val_top1")
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args={"block_config": [2, 2], "growth_rate": 4},
                               dataset="digits", epochs=3, batch_size=64, val_split=200, out=str(runs_dir), name="p",
                               workers=0, tensorboard=False, plots=False)
    run = densekit.train(cfg, callbacks=[report], verbose=False)
    assert report.pruned and run.summary["status"] == "stopped" and len(run.metrics) == 1
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: run.metrics[0]["val_top1"]}


@pytest.mark.parametrize("spec, message", [
    ("lr=log(0,1)", "log takes two positive numbers"), ("lr=0.1", "write KEY=log(LO,HI)"),
    ("growth_rate=int(4,8.5)", "whole numbers"), ("augment=choice(flip)", "two values or more"),
    ("lr=uniform(0.3,0.1)", "LO < HI"),
])
def test_a_bad_space_is_one_line(spec, message):
    with pytest.raises(densekit.DensekitError, match=re.escape(message)):
        parse_space([spec])


def test_a_space_value_that_is_no_setting_is_refused_before_training(tmp_path, capsys):
    assert main([*SEARCH[:6], "augment=choice(flip,sparkle)", *SEARCH[7:], "--out", str(tmp_path)]) == 1
    assert "--space augment: --augment 'sparkle'" in capsys.readouterr().err
    assert main(["sweep", "--search", "optuna", "--grid", "lr=0.1,0.2", "--out", str(tmp_path)]) == 1
    assert main(["sweep", "--grid", "lr=0.1,0.2", "--trials", "3", "--out", str(tmp_path)]) == 1
    assert "--trials acts with --search optuna only" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    space = parse_space(["lr=log(1e-3,0.3)", "block_config=choice([2,2],[3,3])", "augment=choice(flip,crop)"])
    assert space == {"lr": ("log", 1e-3, 0.3), "block_config": ("choice", [2, 2], [3, 3]),
                     "augment": ("choice", "flip", "crop")}
