"""`densekit compare`: two tiny models trained for one epoch on digits under the same budget."""
import json
from pathlib import Path

import pytest

from densekit.cli import main
from densekit.workflows.compare import format_table
from densekit.models import create_model

MODELS = ["plain-cnn", "densenet-bc-40-k12"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    capture = pytest.MonkeyPatch()
    import io
    import sys
    buf = io.StringIO()
    capture.setattr(sys, "stdout", buf)
    try:
        code = main(["compare", *MODELS, "--dataset", "digits", "--epochs", "1", "--out", str(out), "--json"])
    finally:
        capture.undo()
    assert code == 0
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_compare_measures_every_model_under_the_same_budget(rows):
    assert [r["model"] for r in rows] == MODELS
    for r in rows:
        model = create_model(r["model"], num_classes=10, in_channels=r["input_size"][0])
        assert r["params"] == sum(p.numel() for p in model.parameters())   # digits: 10 classes, gray
        assert r["epochs"] == 1 and Path(r["run_dir"], "summary.json").is_file()
        assert r["flops"] > 0 and r["train_images_per_s"] > 0 and r["peak_memory_mb"] > 0
        assert 0.0 <= r["test_top1"] <= 1.0
    # The DenseNet does more arithmetic per image with fewer parameters than the plain CNN.
    plain, dense = rows
    assert dense["params"] < plain["params"] and dense["flops"] > plain["flops"]


def test_compare_table_has_one_line_per_model_with_every_column(rows):
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["model", "params", "GFLOPs", "train", "img/s", "peak", "MB", "test", "top-1"]
    assert [line.split()[0] for line in lines[1:]] == MODELS
    assert f"{rows[1]['params']:,}" in lines[2] and lines[2].endswith("%")


def test_compare_rejects_an_unknown_model_before_training(capsys, tmp_path):
    assert main(["compare", "plain-cnn", "densenet-bc-40-k13", "--dataset", "digits", "--out", str(tmp_path)]) == 1
    assert "unknown model 'densenet-bc-40-k13'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
