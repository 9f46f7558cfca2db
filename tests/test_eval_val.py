"""`densekit eval --split val` scores the validation split that training carved out of train."""
import json

import pytest

import densekit
from conftest import TINY_FLAGS
from densekit.cli import main

TINY = [*TINY_FLAGS,
        "--dataset", "digits", "--batch-size", "64", "--val-split", "300", "--seed", "3", "--workers", "0",
        "--augment", "flip", "--no-tensorboard", "--no-plots"]


def test_eval_val_reproduces_the_best_epochs_validation_figures(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["val_top1"])      # best.pt is the best val_top1 epoch
    capsys.readouterr()
    # the run's TTA is flip (its augmentation flips), but val defaults to the plain view, as training validated
    assert main(["eval", str(tmp_path / "r"), "--split", "val", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["count"] == 300 and "tta" not in m
    assert m["top1"] == best["val_top1"] and m["top5"] == best["val_top5"]
    assert m["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    flipped = densekit.evaluate(tmp_path / "r", split="val", tta="flip")     # asked for: applied
    assert flipped["tta"] == "flip" and flipped["count"] == 300


def test_eval_val_without_a_carved_split_says_so(tmp_path, capsys):
    args = [a if a != "300" else "0" for a in TINY]
    assert main(["train", *args, "--epochs", "1", "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
    assert main(["eval", str(tmp_path / "r"), "--split", "val"]) == 1
    assert "digits has splits train and test, not 'val'" in capsys.readouterr().err
