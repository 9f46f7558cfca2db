"""torchrun on CPU (gloo): two ranks must take every time-based decision together.

A rank that checkpoints (a barrier) or stops on its own clock while the other is in DDP's
gradient all-reduce leaves the collectives out of step: the run hangs or dies. Here checkpoints
are due every few milliseconds and a time budget ends the run, so per-rank clocks would disagree.
"""
import json
import os
import subprocess
import sys


def torchrun(*args):
    """``torchrun --standalone --nproc_per_node 2 ARGS``, one thread per rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def torchrun_train(out, *args):
    """``torchrun --nproc_per_node 2 -m densekit train`` of a tiny DenseNet on digits into OUT/ddp."""
    return torchrun("-m", "densekit", "train", "--dataset", "digits", "--model", "densenet-bc-40-k12",
                    "--model-arg", "block_config=[3,3]", "--model-arg", "growth_rate=8", "--batch-size", "16",
                    "--workers", "0", "--no-tensorboard", "--no-plots", "--out", str(out), "--name", "ddp", *args)


def test_two_ranks_agree_on_checkpoints_and_the_time_budget(tmp_path):
    done = torchrun_train(tmp_path, "--val-split", "200", "--time-budget", "6s", "--checkpoint-every", "0.005")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert 6.0 <= summary["duration_s"] < 6.0 + 20.0   # the last step and evaluation overrun a little
    assert summary["test_top1"] > 0.3
    # Only rank 0 wrote: one run folder, one metrics line per epoch.
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    # Both ranks' halves of each global batch of 16 (8 each), not rank 0's alone.
    assert records[0]["train_images"] == 16 * records[0]["global_step"]


def test_a_diverging_run_stops_on_every_rank_with_one_error(tmp_path):
    # The guard judges the loss averaged over ranks, so all ranks raise at the same step.
    done = torchrun_train(tmp_path, "--optimizer", "rmsprop", "--lr", "10", "--epochs", "3")
    assert done.returncode != 0
    assert "training diverged at epoch 1" in done.stderr
    assert json.loads((tmp_path / "ddp" / "status.json").read_text())["status"] == "diverged"


_STOP_ON_RANK_1 = """
import sys, torch.distributed as dist
import densekit
from densekit.engine.trainer import Callback

class StopOnRank1(Callback):
    def on_epoch_end(self, trainer, record):
        if dist.get_rank() == 1:
            trainer.stop = True

densekit.train(dataset="digits", model="densenet-bc-40-k12", model_args={"block_config": [3, 3], "growth_rate": 8},
               batch_size=16, workers=0, epochs=4, tensorboard=False, plots=False, out=sys.argv[1], name="ddp",
               callbacks=[StopOnRank1()], verbose=False)
"""


def test_a_callback_stopping_one_rank_stops_them_all(tmp_path):
    script = tmp_path / "stop_on_rank_1.py"
    script.write_text(_STOP_ON_RANK_1)
    done = torchrun(str(script), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]   # rank 0 stopped with rank 1, after epoch 1 of 4
    assert json.loads((run / "status.json").read_text())["status"] == "stopped"
