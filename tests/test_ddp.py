"""N processes train what one process trains: torchrun (gloo on CPU, 127.0.0.1) against one process.

The two reference runs (one process; two with --sync-bn) train the same tiny DenseNet on digits for
two epochs of 20 global batches of 64. Two processes compute each step's gradient and BatchNorm
statistics as sums in another order than one process, so their weights agree to float32
round-off amplified by 40 steps of SGD, not bit for bit: measured 5e-4 at most (one process on 1
thread against 2 threads differs by as much), while without --sync-bn the per-rank BatchNorm
statistics move the weights by 3e-2. ``TOL`` sits between the two; ``test_without_sync_bn_...``
checks the gap stays. Runs on the same number of processes are equal exactly (a sum of two
numbers does not depend on its order), so a restarted run must equal the uninterrupted one.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml

import densekit
from densekit.data import Loader
from densekit.data.augment import Augment

TOL = 5e-3
ARGS = ["--dataset", "digits", "--model", "densenet-bc-40-k12", "--model-arg", "block_config=[3,3]",
        "--model-arg", "growth_rate=8", "--batch-size", "64", "--epochs", "2", "--precision", "fp32",
        "--schedule", "constant", "--lr", "0.01", "--workers", "0", "--no-tensorboard", "--no-plots",
        "--quiet"]
MID_EPOCH = ["--checkpoint-every", "0.005"]   # last.pt after every step (clock-driven: the math is the same)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def densekit_train(*args, timeout=100):
    done = subprocess.run([sys.executable, "-m", "densekit", "train", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "densekit", "train", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]


def max_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def near(a, b, images):
    """Fractions of ``images`` that differ by one image at most."""
    return round(abs(a - b) * images) <= 1


def summary(run):
    return json.loads((run / "summary.json").read_text())


def wait_mid_epoch(run, proc, step=3, timeout=60):
    """Block until the run's last.pt is a mid-epoch checkpoint at least ``step`` steps in."""
    ckpt, end = run / "checkpoints" / "last.pt", time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if ckpt.exists():
            try:
                p = torch.load(ckpt, weights_only=True)["progress"]
            except Exception:   # replaced while we read it
                continue
            if p["step"] >= step:
                return p
        time.sleep(0.02)
    raise AssertionError("no mid-epoch checkpoint in time")


def workers_of(agent_pid):
    """{rank: pid} of the training processes torchrun's agent started."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == agent_pid:
            ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(pid)
    return found


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    densekit_train(*ARGS, "--out", str(out), "--name", "one")
    return out / "one"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    densekit_train(*ARGS, "--sync-bn", "--nproc", "2", "--out", str(out), "--name", "two")
    return out / "two"


def test_the_ranks_together_take_one_process_s_batches_and_augmentations():
    ds = densekit.load_dataset("digits", "train")
    single = Loader(ds, 64, shuffle=True, seed=3, drop_last=True)
    augment = Augment("crop+erasing", seed=3)
    for start in (0, 7):   # from the epoch's start, and resumed mid-epoch
        shards = [list(Loader(ds, 64, shuffle=True, seed=3, drop_last=True, rank=r, world_size=2).epoch(1, start))
                  for r in range(2)]
        for step, (x, y) in enumerate(single.epoch(1, start), start):
            parts = [s[step - start] for s in shards]
            assert torch.equal(torch.cat([p[0] for p in parts]), x)
            assert torch.equal(torch.cat([p[1] for p in parts]), y)
            whole = augment(x.float(), y, 1, step)[0]
            rows = Loader(ds, 64, rank=1, world_size=2).rows(step)
            assert rows == (32, 64, 64)
            assert torch.equal(augment(parts[1][0].float(), parts[1][1], 1, step, rows=rows)[0], whole[32:])


def test_two_processes_with_sync_bn_train_one_process_s_model(one, two):
    assert max_diff(weights(one), weights(two)) < TOL
    # The metrics agree but for a prediction that round-off tips from one class to another (evaluation
    # itself is exact: test_evaluation_on_two_ranks_...); a near-chance model has many near-ties.
    a, b = summary(one), summary(two)
    for key in ("test_top1", "test_top5"):
        assert near(a[key], b[key], 360), key
    assert abs(a["test_loss"] - b["test_loss"]) < 1e-3
    m1, m2 = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (one, two)]
    assert [r["train_images"] for r in m1] == [r["train_images"] for r in m2] == [1280, 1280]
    for r1, r2 in zip(m1, m2):
        assert near(r1["val_top1"], r2["val_top1"], 144) and abs(r1["train_loss"] - r2["train_loss"]) < 1e-3
    resolved = yaml.safe_load((two / "config.yaml").read_text())
    assert resolved["sync_bn"] is True
    assert resolved["resolved"]["distributed"] == {"world_size": 2, "batch_per_rank": 32, "backend": "gloo",
                                                   "sync_bn": True}


def test_without_sync_bn_the_ranks_batchnorm_statistics_make_another_model(one, tmp_path):
    densekit_train(*ARGS, "--nproc", "2", "--out", str(tmp_path), "--name", "local-bn")
    assert max_diff(weights(one), weights(tmp_path / "local-bn")) > 3 * TOL


def test_a_killed_rank_is_restarted_and_the_run_ends_as_if_uninterrupted(two, tmp_path):
    # No --name: the launcher names the run once, so the restarted workers find its folder.
    agent = start(*ARGS, *MID_EPOCH, "--sync-bn", "--nproc", "2", "--max-restarts", "1", "--out", str(tmp_path))
    try:
        deadline = time.time() + 30
        while not list(tmp_path.glob("*/checkpoints")) and time.time() < deadline:
            time.sleep(0.05)
        run = next(tmp_path.iterdir())
        killed_at = wait_mid_epoch(run, agent)
        os.kill(workers_of(agent.pid)[1], signal.SIGKILL)
        try:
            _, err = agent.communicate(timeout=100)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise AssertionError(agent.communicate()[1][-4000:]) from None
    finally:
        agent.kill()
    assert agent.returncode == 0, err[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished"
    [restart] = status["restarts"]
    assert restart["restart"] == 1 and (restart["epoch"], restart["step"]) >= (killed_at["epoch"], killed_at["step"])
    a, b = weights(two), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summary(run)["test_top1"] == summary(two)["test_top1"]


def _kill_mid_epoch(args, out, nproc):
    proc = start(*args, *(["--nproc", str(nproc)] if nproc > 1 else []), "--out", str(out), "--name", "r")
    try:
        wait_mid_epoch(out / "r", proc, step=5)
        for pid in workers_of(proc.pid).values():
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    return out / "r"


@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_processes(one, tmp_path, before, after):
    run = _kill_mid_epoch([*ARGS, *MID_EPOCH, "--sync-bn"], tmp_path, before)
    done = densekit_train("--resume", str(run), *(["--nproc", str(after)] if after > 1 else []))
    assert (f"resuming on {after} process{'es' if after > 1 else ''} (was {before}): global batch 64 kept, "
            f"{64 // after} per process (was {64 // before})") in done.stdout
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert max_diff(weights(one), weights(run)) < TOL   # the same batches; a shuffled order would miss by far
    assert [json.loads(line)["train_images"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1280, 1280]
    assert near(summary(run)["test_top1"], summary(one)["test_top1"], 360)


_EVAL = """
import json, sys
import densekit
m = densekit.evaluate(sys.argv[1], batch_size=50)
import torch.distributed as dist
if dist.get_rank() == 0:
    print(json.dumps(m))
"""


def test_evaluation_on_two_ranks_gives_one_process_s_figures_exactly(one, tmp_path):
    script = tmp_path / "evaluate.py"
    script.write_text(_EVAL)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(one)], env=ENV, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads(done.stdout.strip().splitlines()[-1])
    alone = densekit.evaluate(one, batch_size=50)   # 360 images: 8 batches, the last of 10
    for key in ("top1", "top5", "count", "per_class", "confusion"):
        assert ranks[key] == alone[key], key
    assert abs(ranks["loss"] - alone["loss"]) < 1e-12


def test_two_agents_on_two_nodes_train_the_two_process_model(two, tmp_path):
    with socket.socket() as s:   # a free port for the c10d rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [*ARGS, "--sync-bn", "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}",
            "--out", str(tmp_path), "--name", "nodes"]
    agents = [start(*node) for _ in range(2)]
    try:
        errors = [a.communicate(timeout=100)[1] for a in agents]
    finally:
        for a in agents:
            a.kill()
    assert [a.returncode for a in agents] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    a, b = weights(two), weights(tmp_path / "nodes")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "nodes" / "status.json").read_text())["status"] == "finished"


_ACCUMULATE = """
import json, sys
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from densekit.config import TrainConfig
from densekit.engine import Trainer

cfg = TrainConfig(dataset="digits", model="densenet-bc-40-k12", model_args={"block_config": [3, 3], "growth_rate": 8},
                  batch_size=64, accumulate=2, epochs=1, workers=0, tensorboard=False, plots=False,
                  out=sys.argv[1], name="acc", val_split=0)
trainer = Trainer(cfg, verbose=False)
reduced = set()

def hook(group, bucket):   # DDP's own all-reduce, noting the step it serves
    reduced.add(trainer.step_in_epoch)
    return allreduce_hook(group, bucket)

trainer.ddp.register_comm_hook(None, hook)
trainer.fit()
if dist.get_rank() == 0:
    print(json.dumps({"reduced": sorted(reduced), "steps": trainer.global_step}))
"""


def test_accumulating_steps_skip_the_gradient_all_reduce(tmp_path):
    script = tmp_path / "accumulate.py"
    script.write_text(_ACCUMULATE)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["steps"] == 22   # 1,437 images: 22 global batches of 64
    assert seen["reduced"] == list(range(1, 22, 2))   # only the second step of each pair all-reduces
