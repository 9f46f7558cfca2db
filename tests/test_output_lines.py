"""What a person reads at the end of training: one result line, "top-1" named alike everywhere,
top-k for fewer than 5 classes, a progress bar with the epoch count and the whole run's ETA, and
a config.yaml that records what was actually used."""
import io
import json
import re
import sys

import yaml

from conftest import TINY_FLAGS
from densekit.cli import main
from densekit.engine.progress import ProgressBar

TINY = [*TINY_FLAGS,
        "--batch-size", "64", "--workers", "0", "--no-tensorboard", "--no-plots"]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as a user's stderr does."""
    def isatty(self):
        return True


def test_training_ends_with_one_result_line_and_names_top1_alike(tmp_path, capsys, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    args = ["train", *TINY, "--dataset", "synthetic:n=300,classes=3,size=8,channels=1", "--val-split", "60",
            "--epochs", "2", "--out", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    out = capsys.readouterr().out
    results = [line for line in out.splitlines() if "test top-1" in line]
    assert len(results) == 1 and results[0] == out.splitlines()[-1], out
    assert "top-3 " in results[0] and "top-5" not in results[0] and f"results in {tmp_path / 'r'}" in results[0]
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(re.search(r"train loss \S+ top-1 \S+% val loss \S+ top-1 ", e) for e in epochs)
    assert not re.search(r"\btop1\b|\btop5\b|\bacc\b", out)
    bar = term.getvalue()
    assert "epoch 1/2 [" in bar and "epoch 2/2 [" in bar and "top-1 " in bar and " acc " not in bar
    # the ETA of the whole run: during epoch 1 it is more than the rest of that epoch
    etas = [int(m[0]) * 60 + int(m[1]) for m in re.findall(r"ETA (\d+):(\d\d)", bar)]
    assert etas and etas[-1] == 0

    # --quiet prints the same single line and nothing else
    assert main(["train", *TINY, "--dataset", "digits", "--val-split", "200", "--epochs", "1", "--out", str(tmp_path),
                 "--name", "q", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("test top-1 ") and " top-5 " in out[0]


def test_eval_shows_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    assert main(["train", *TINY, "--dataset", "digits", "--val-split", "0", "--epochs", "1", "--out", str(tmp_path),
                 "--name", "r", "--quiet"]) == 0
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--batch-size", "100"]) == 0
    assert "eval test [" in term.getvalue() and "360/360" in term.getvalue()
    assert "top-5" in capsys.readouterr().out
    term.truncate(0)
    assert main(["eval", str(tmp_path / "r"), "--json"]) == 0
    assert term.getvalue().strip("\x00") == "" and json.loads(capsys.readouterr().out)["count"] == 360


def test_progress_bar_takes_the_callers_eta():
    term = Terminal()
    bar = ProgressBar(10, "epoch 1/3", stream=term)
    bar.update(10, eta=125.0, loss="0.5")
    assert "epoch 1/3 [" in term.getvalue() and "10/10 loss 0.5 ETA 2:05" in term.getvalue()


def test_config_records_what_was_used(tmp_path, capsys):
    assert main(["train", *TINY, "--dataset", "digits", "--val-split", "200", "--epochs", "1", "--out", str(tmp_path),
                 "--name", "r", "--quiet"]) == 0
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["lr"] is None and cfg["augment"] == "auto" and cfg["tta"] == "auto"
    used = cfg["resolved"]
    import densekit
    import torch
    assert used["lr"] == 0.1                      # sgd's default
    assert used["augment"] == "crop" and used["tta"] == "none"   # digits: no flips
    assert used["versions"]["densekit"] == densekit.__version__ and used["versions"]["torch"] == torch.__version__
    assert used["command"]                         # this process's command line
    capsys.readouterr()
    assert main(["runs", "show", str(tmp_path / "r")]) == 0
    shown = capsys.readouterr().out
    assert "  lr: None (used: 0.1)" in shown and "  augment: auto (used: crop)" in shown
    assert f"torch {torch.__version__}" in shown
