"""`densekit sweep`: a grid of settings and model arguments, one run folder each, ranked."""
import json

import pytest
import yaml

import densekit
from densekit.cli import main
from densekit.workflows.sweep import parse_grid, rank

BASE = ["--model", "densenet-bc-40-k12", "--model-arg", "block_config=[2,2]", "--dataset", "digits", "--epochs", "1",
        "--batch-size", "64", "--val-split", "200", "--workers", "0", "--no-tensorboard", "--no-plots"]


def test_grid_of_lr_and_growth_rate_gives_four_named_runs_ranked_by_validation_accuracy(tmp_path, capsys):
    args = ["sweep", "--grid", "lr=0.1,0.05", "--grid", "growth_rate=4,8", *BASE, "--out", str(tmp_path),
            "--name", "grid", "--json"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["name"] for r in rows) == sorted(["lr0.1-growth_rate4", "lr0.1-growth_rate8",
                                                      "lr0.05-growth_rate4", "lr0.05-growth_rate8"])
    for r in rows:
        saved = yaml.safe_load((tmp_path / "grid" / r["name"] / "config.yaml").read_text())
        assert saved["lr"] == r["values"]["lr"]
        assert saved["model_args"] == {"block_config": [2, 2], "growth_rate": r["values"]["growth_rate"]}
        assert saved["resolved"]["model"]["args"]["growth_rate"] == r["values"]["growth_rate"]
        summary = json.loads((tmp_path / "grid" / r["name"] / "summary.json").read_text())
        assert r["test_top1"] == pytest.approx(summary["test_top1"]) and r["status"] == "finished"
        metrics = [json.loads(line) for line in (tmp_path / "grid" / r["name"] / "metrics.jsonl").read_text().splitlines()]
        assert r["rank_by"] == "val_top1" and r["rank_value"] == max(m["val_top1"] for m in metrics)
    vals = [r["rank_value"] for r in rows]      # ranked by validation, never by the test set
    assert vals == sorted(vals, reverse=True) and [r["rank"] for r in rows] == [1, 2, 3, 4]

    # the same runs, as the plain table and as `densekit runs`
    assert main(["runs", str(tmp_path / "grid")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 4


def test_a_diverging_combination_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    args = ["sweep", "--grid", "optimizer=rmsprop,sgd", *BASE, "--lr", "0.1", "--momentum", "0", "--schedule",
            "constant", "--weight-decay", "0", "--out", str(tmp_path), "--name", "opt", "--quiet"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RANK", "RUN", "OPTIMIZER", "STATUS", "BEST", "VAL_TOP1", "(RANKED)", "TEST", "DURATION"]
    assert lines[1].split()[:4] == ["1", "optimizersgd", "sgd", "finished"]
    assert lines[2].split()[:4] == ["2", "optimizerrmsprop", "rmsprop", "diverged"]
    assert lines[-1] == f"run folders in {tmp_path / 'opt'}"


def test_grid_parsing_and_bad_keys():
    assert parse_grid(["lr=0.1,0.05", "block_config=[3,3],[6,6]", "nesterov=true,false"]) == {
        "lr": [0.1, 0.05], "block_config": [[3, 3], [6, 6]], "nesterov": [True, False]}
    for bad, message in (("lr", "write KEY=V1,V2"), ("lr=", "write KEY=V1,V2")):
        with pytest.raises(densekit.DensekitError, match=message):
            parse_grid([bad])
    with pytest.raises(densekit.DensekitError, match="given twice"):
        parse_grid(["lr=0.1", "lr=0.2"])


def test_unknown_grid_key_fails_before_training(tmp_path, capsys):
    assert main(["sweep", "--grid", "growth_rat=4,8", *BASE, "--out", str(tmp_path)]) == 1
    assert "growth_rat: not a training setting nor an argument of model densenet-bc-40-k12" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_rank_by_refuses_the_test_set_and_ranks_a_loss_lowest_first(tmp_path, capsys):
    assert main(["sweep", "--grid", "lr=0.1,0.05", *BASE, "--out", str(tmp_path), "--rank-by", "test_top1"]) == 1
    assert "the test set must not choose hyper-parameters" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []          # refused before anything trained
    rows = [{"name": n, "rank_by": "val_loss", "rank_value": v} for n, v in (("a", 0.5), ("b", None), ("c", 0.2))]
    assert [r["name"] for r in rank(rows)] == ["c", "a", "b"]
