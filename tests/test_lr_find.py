"""The LR range test on scikit-learn's 8x8 digits: a usable suggestion, a plot, no run left behind."""
import json
import math
import os
import subprocess
import sys

import pytest

import densekit
from conftest import TINY

TINY_RUN = dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", batch_size=32, workers=0)


def test_lr_find_suggests_a_finite_lr_inside_the_sweep_and_leaves_no_run(tmp_path):
    out = tmp_path / "runs"
    result = densekit.lr_find(densekit.TrainConfig(**TINY_RUN, out=str(out)), num_iter=60,
                              plot=tmp_path / "lr.png", verbose=False)
    assert math.isfinite(result.suggestion)
    assert result.start_lr <= result.suggestion <= result.end_lr
    assert result.min_lr == pytest.approx(10 * result.suggestion)
    assert result.lrs[0] == pytest.approx(1e-7) and len(result.lrs) == len(result.losses) == 60
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))           # exponential, increasing
    assert min(result.losses) < result.losses[0]                           # the sweep did train
    assert (tmp_path / "lr.png").stat().st_size > 10_000
    assert not out.exists() and result.run_dir is None


def test_lr_find_stops_early_when_the_loss_diverges(tmp_path):
    # Plain SGD without momentum on a CNN: LRs of 10-10,000 blow the loss up well before the end.
    result = densekit.lr_find(densekit.TrainConfig(**{**TINY_RUN, "model": "plain-cnn", "model_args": {}},
                                                   momentum=0.0, out=str(tmp_path / "runs")),
                              start_lr=1e-4, end_lr=1e4, num_iter=80, plot=None, verbose=False)
    assert result.stopped_early
    assert len(result.lrs) < 80 and result.lrs[-1] < 1e4
    assert max(result.losses) > 4 * min(result.losses) or not math.isfinite(result.raw_losses[-1])
    assert result.plot is None and not (tmp_path / "runs").exists()


def test_cli_lr_find_prints_one_line_usable_as_lr_and_keeps_a_folder_when_asked(tmp_path):
    flags = ["--dataset", "digits", "--model", "densenet-bc-40-k12", "--model-arg", "block_config=[3,3]",
             "--model-arg", "growth_rate=8", "--batch-size", "32", "--workers", "0", "--num-iter", "30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "densekit", "lr-find", *flags, "--plot", str(tmp_path / "p.png")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("suggested --lr ")
    assert float(lines[0].split()[2]) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]          # no runs/ folder
    kept = subprocess.run([sys.executable, "-m", "densekit", "lr-find", *flags, "--json", "--out", "kept",
                           "--name", "lr"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert kept.returncode == 0, kept.stderr
    result = json.loads(kept.stdout)
    run = tmp_path / "kept" / "lr"
    assert result["run_dir"] == str(run).removeprefix(str(tmp_path) + "/") or result["run_dir"] == str(run)
    assert {"config.yaml", "lr_find.json", "lr_find.png"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "lr_find.json").read_text())["suggestion"] == result["suggestion"]
    refused = subprocess.run([sys.executable, "-m", "densekit", "lr-find", *flags, "--lr", "0.1"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert refused.returncode == 1 and "drop --lr" in refused.stderr and "Traceback" not in refused.stderr
