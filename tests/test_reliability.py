"""Trust at the edges of a run: signals, run folders (locks, names, reuse), torn and damaged files,
a full disk and a read-only folder, and evaluation against the wrong class names."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

import densekit
from densekit.engine.checkpoint import load_checkpoint
from densekit.engine.evaluate import _label_map
from densekit.engine.run import RunFolder
from test_engine import TINY, tiny_config

TIMING = {"images_per_s", "data_time_s", "compute_time_s", "elapsed_s"}


def train_cmd(out, name, *extra, epochs=3):
    named = ["--name", name] if name else []
    return [sys.executable, "-m", "densekit", "train", "--dataset", "digits", "--model", "densenet-bc-40-k12",
            "--model-arg", "block_config=[3,3]", "--model-arg", "growth_rate=8", "--batch-size", "32", "--lr", "0.1",
            "--val-split", "200", "--workers", "0", "--no-tensorboard", "--no-plots", "--epochs", str(epochs),
            "--out", str(out), *named, "--quiet", *extra]


def wait_for(predicate, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def epochs_done(run: Path) -> int:
    return len(RunFolder(run).read_metrics())


def strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_sigterm_saves_at_the_next_step_records_why_and_the_resumed_run_ends_identically(tmp_path):
    proc = subprocess.Popen(train_cmd(tmp_path, "term"), stderr=subprocess.PIPE, text=True)
    run = tmp_path / "term"
    try:
        assert wait_for(lambda: epochs_done(run) >= 1)
        time.sleep(0.3)                       # into epoch 2
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "stopped (SIGTERM received)" in ln]
    assert len(line) == 1 and f"densekit train --resume {run}" in line[0]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "stopped" and status["reason"] == "SIGTERM received"
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]
    assert (saved["epoch"], saved["step"]) > (1, 0)     # a step boundary after epoch 1, not an epoch's end only
    listed = subprocess.run([sys.executable, "-m", "densekit", "runs", str(tmp_path)], capture_output=True, text=True)
    assert "stopped" in listed.stdout and "SIGTERM received" in listed.stdout
    resumed = subprocess.run([sys.executable, "-m", "densekit", "train", "--resume", str(run), "--quiet", "--json"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = densekit.train(tiny_config(tmp_path, "reference"), verbose=False)
    assert strip(RunFolder(run).read_metrics()) == strip(reference.metrics)
    summary = json.loads(resumed.stdout.splitlines()[-1])
    assert summary["status"] == "finished" and summary["test_top1"] == reference.summary["test_top1"]


def test_a_second_interrupt_exits_at_once_without_a_traceback(tmp_path):
    proc = subprocess.Popen(train_cmd(tmp_path, "int", epochs=50), stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "int" / "checkpoints").is_dir() and
                        RunFolder(tmp_path / "int").read_status().get("status") == "running")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode in (130, 128 + signal.SIGINT)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_two_trainings_of_one_name_never_share_a_folder(tmp_path):
    proc = subprocess.Popen(train_cmd(tmp_path, "busy", epochs=50), stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: RunFolder(tmp_path / "busy").in_use())
        with pytest.raises(densekit.DensekitError, match="is in use by process"):
            densekit.train(tiny_config(tmp_path, "busy"), verbose=False)
        with pytest.raises(densekit.DensekitError, match="is in use by process"):
            densekit.train(resume=tmp_path / "busy", verbose=False)
    finally:
        proc.kill()
        proc.wait()
    # the lock dies with its process, even a killed one: the run resumes (and is not "in use")
    assert wait_for(lambda: not RunFolder(tmp_path / "busy").in_use(), 10)
    # generated names are unique, even within one second
    a = RunFolder.create(tmp_path, "same-second", unique=True)
    b = RunFolder.create(tmp_path, "same-second", unique=True)
    assert a.path != b.path and b.path.name == "same-second-2"


@pytest.mark.parametrize("name", ["../../escape", "/tmp/absolute", "a/b", ".hidden", "..", ""])
def test_a_run_name_is_a_name_not_a_path(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(densekit.DensekitError, match="not a plain name"):
        densekit.train(tiny_config(out, name), verbose=False)
    assert not (tmp_path / "escape").exists() and sorted(p.name for p in tmp_path.iterdir()) in ([], ["out"])


def test_names_from_yaml_and_sweeps_are_checked_too(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("name: ../escaped\n")
    done = subprocess.run(train_cmd(tmp_path / "out", None, "--config", str(yml)), capture_output=True, text=True)
    assert done.returncode == 1 and "not a plain name" in done.stderr and "Traceback" not in done.stderr
    sweep = subprocess.run([sys.executable, "-m", "densekit", "sweep", "--dataset", "digits", "--grid", "lr=0.1,0.05",
                            "--out", str(tmp_path / "out"), "--name", "../escaped-sweep"], capture_output=True, text=True)
    assert sweep.returncode == 1 and "not a plain name" in sweep.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "escaped-sweep").exists()


def test_a_folder_whose_checkpoints_were_deleted_is_not_reused(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "gone", epochs=1), verbose=False)
    shutil.rmtree(run.dir / "checkpoints")
    with pytest.raises(densekit.DensekitError, match="checkpoints are gone"):
        densekit.train(tiny_config(runs_dir, "gone", epochs=1), verbose=False)
    assert len(RunFolder(run.dir).read_metrics()) == 1


def test_a_torn_metrics_line_breaks_no_reader_and_resume_rewrites_it(runs_dir, tmp_path):
    run = densekit.train(tiny_config(runs_dir, "torn", epochs=1), verbose=False)
    with open(run.dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_lo')                      # a kill mid-append by an older writer
    for args in (["runs", str(runs_dir)], ["runs", "show", str(run.dir)],
                 ["report", str(run.dir), "--out", str(tmp_path / "r.html")]):
        done = subprocess.run([sys.executable, "-m", "densekit", *args], capture_output=True, text=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr[-1500:])
    resumed = densekit.train(resume=run.dir, epochs=2, verbose=False)
    lines = (run.dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2] and resumed.summary["epochs"] == 2


def _tensor_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every tensor's bytes inside a torch.save zip (stored, uncompressed)."""
    spans = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if "/data/" in info.filename and info.file_size:
                f.seek(info.header_offset + 26)
                name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
                spans.append((info.header_offset + 30 + name_len + extra_len, info.file_size))
    return spans


def test_every_flipped_byte_in_a_checkpoints_tensors_is_refused(runs_dir, tmp_path):
    run = densekit.train(tiny_config(runs_dir, "flips", epochs=1), verbose=False)
    original = (run.dir / "checkpoints" / "last.pt").read_bytes()
    spans, rng = _tensor_spans(run.dir / "checkpoints" / "last.pt"), random.Random(0)
    assert spans
    refused = 0
    for i in range(100):
        start, length = rng.choice(spans)
        pos = start + rng.randrange(length)
        damaged = bytearray(original)
        damaged[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(damaged))
        with pytest.raises(densekit.DensekitError, match="damaged|corrupt") as err:
            load_checkpoint(path)
        refused += "\n" not in str(err.value)
        path.unlink()
    assert refused == 100


def test_a_checkpoint_with_the_marker_but_bad_fields_gets_one_line(runs_dir, tmp_path):
    run = densekit.train(tiny_config(runs_dir, "fields", epochs=1), verbose=False)
    good = torch.load(run.dir / "checkpoints" / "best.pt", weights_only=True)
    cases = {"classes": lambda p: p["data"].update(classes=5), "mean": lambda p: p["data"].update(mean=["x"]),
             "model": lambda p: p.pop("model"), "state": lambda p: p.update(state_dict={"a": 1}),
             "classes-huge": lambda p: p["model"]["args"].update(num_classes=10**8)}
    for name, mutate in cases.items():
        payload = torch.load(run.dir / "checkpoints" / "best.pt", weights_only=True)
        mutate(payload)
        payload.pop("checksum")
        payload["version"] = 1          # an old, checksum-less file: the fields are all that is checked
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(densekit.DensekitError) as err:
            densekit.evaluate(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value), name
    assert good["format"] == "densekit-checkpoint"


def _in_tmpfs(tmp_path: Path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (shell) with ``tmp_path/mnt`` a fresh tmpfs of ``size``, in a private mount namespace."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                           f"mount -t tmpfs -o size={size} tmpfs {mnt} && {script}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MNT": str(mnt)})


def test_a_full_disk_gives_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    cmd = " ".join(train_cmd("$MNT", "full", "--checkpoint-every", "0", epochs=2))
    # room for the config and two checkpoints, not for a third copy during the atomic replace
    done = _in_tmpfs(tmp_path, "600k", f"{cmd}; echo rc=$?; "
                     f"{sys.executable} -c \"import densekit.engine.checkpoint as c, sys; "
                     f"p = c.load_checkpoint(sys.argv[1])['progress']; print('intact', p['epoch'], p['step'])\" "
                     f"$MNT/full/checkpoints/last.pt; cat $MNT/full/status.json")
    assert "rc=1" in done.stdout, done.stdout + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "intact" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "intact" in done.stdout and '"status": "failed"' in done.stdout and "the disk is full" in done.stdout


def test_a_read_only_run_folder_gives_one_line(tmp_path):
    cmd = " ".join(train_cmd("$MNT", "ro", epochs=1))
    done = _in_tmpfs(tmp_path, "64m", f"{cmd} && mount -o remount,ro $MNT && "
                     f"{sys.executable} -m densekit train --resume $MNT/ro --epochs 2; echo rc=$?")
    assert "rc=1" in done.stdout, done.stdout + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "read-only" in errors[0] and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_eval_maps_classes_by_name_or_refuses_other_class_names(runs_dir, tmp_path):
    assert _label_map(["0", "1", "2"], ("0", "1", "2"), "x") is None
    assert _label_map(["2", "0", "1"], ("0", "1", "2"), "x").tolist() == [2, 0, 1]
    with pytest.raises(densekit.DensekitError, match="classes the model was not trained on"):
        _label_map(["cat", "dog"], ("0", "1"), "x")
    from datagen import write_folder
    run = densekit.train(tiny_config(runs_dir, "names", epochs=1), verbose=False)
    folder = write_folder(tmp_path / "pets", classes=[str(i) for i in range(9)] + ["cat"], size=(8, 8), mode="L")
    with pytest.raises(densekit.DensekitError, match="classes the model was not trained on.*'cat'"):
        densekit.evaluate(run.dir, dataset=f"folder:{folder}", split="train")
    same = write_folder(tmp_path / "digits", classes=[str(i) for i in range(10)], size=(8, 8), mode="L")
    assert densekit.evaluate(run.dir, dataset=f"folder:{same}", split="train")["count"] == 40
    assert TINY
