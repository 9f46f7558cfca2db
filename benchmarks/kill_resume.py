"""Kill a training run with SIGKILL at many points, resume it each time, and check that it ends
exactly where an uninterrupted run ends: the same weights (bit for bit), metrics and summary.

An uninterrupted reference run first records a trace of the events where something is written
or decided (every step, every checkpoint save, validation, the test pass, the metrics and
summary writes, the status changes). Kill points are picked from that trace, in order: a child
process trains (or resumes) with hooks that SIGKILL it at the next kill point, either just before
the event or, for checkpoint saves, half-way through writing the file (what a kill mid-write
leaves: a partial temporary file beside the checkpoint). The parent resumes until the run
finishes, then compares.

    python benchmarks/kill_resume.py --kills 60 --seed 3        # random kill points, long run
    python benchmarks/kill_resume.py --kills 25 --epochs 4

``tests/test_kill_resume.py`` runs a short fixed selection in CI through ``kill_and_resume``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child: the real `densekit.train`, with the kill hooks wrapped around the functions that
# write or decide. Test-only code: nothing of it lives in densekit.
CHILD = r'''
import io, json, os, signal, sys
from pathlib import Path
import torch
import densekit
from densekit.engine import checkpoint as C, run as R, trainer as T

plan = json.loads(sys.argv[1])
trace = open(plan["trace"], "a") if plan.get("trace") else None
kill = plan.get("kill")            # [key, variant] or None
state = {}

def die():
    if plan.get("hit"):
        Path(plan["hit"]).write_text(json.dumps(kill))
    os.kill(os.getpid(), signal.SIGKILL)

def event(key):
    if trace:
        trace.write(json.dumps(key) + "\n")
        trace.flush()
    return kill[1] if kill and kill[0] == key else None

save = C.save_checkpoint
def hooked_save(payload, path):
    p = payload["progress"]
    variant = event(["save", Path(path).stem, p["epoch"], p["step"]])
    if variant == "before":
        die()
    if variant == "mid":
        buf = io.BytesIO()
        torch.save(payload, buf)
        Path(path).parent.joinpath(f".{Path(path).name}.killed.tmp").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        die()
    return save(payload, path)
C.save_checkpoint = hooked_save

step = T.Trainer.step
def hooked_step(self, x, target, lr=None, index=None):
    out = step(self, x, target, lr, index)     # the weights have moved; the counters and files have not
    if event(["step", self.global_step + 1]):
        die()
    return out
T.Trainer.step = hooked_step

run_eval = T.run_eval
def hooked_eval(model, ds, opts, **kw):
    if event(["eval", "test" if kw.get("outputs") else "val", state["trainer"].epoch]):
        die()
    return run_eval(model, ds, opts, **kw)
T.run_eval = hooked_eval

fit = T.Trainer.fit
def hooked_fit(self):
    state["trainer"] = self
    return fit(self)
T.Trainer.fit = hooked_fit

for name, key in (("write_metrics", lambda a: ["metrics", len(a[0])]), ("write_json", lambda a: ["json", a[0]]),
                  ("write_status", lambda a: ["status", a[0]])):
    def make(original, key):
        def hooked(self, *args, **kw):
            if event(key(args)):
                die()
            return original(self, *args, **kw)
        return hooked
    setattr(R.RunFolder, name, make(getattr(R.RunFolder, name), key))

if plan["resume"]:
    densekit.train(resume=plan["run"], verbose=False)
else:
    densekit.train(densekit.TrainConfig(**plan["config"]), verbose=False)
'''

TIMING = {"images_per_s", "data_time_s", "compute_time_s", "elapsed_s", "duration_s", "train_images_per_s",
          "peak_memory_mb", "run_dir"}
KILLABLE = {"save": ("mid", "before"), "step": ("at",), "eval": ("at",), "metrics": ("at",), "json": ("at",),
            "status": ("at",)}


def config(out: Path, name: str, epochs: int = 3) -> dict:
    """A tiny DenseNet-BC on scikit-learn's digits, checkpointing after every step."""
    return dict(model="densenet-bc-40-k12", model_args={"block_config": [3, 3], "growth_rate": 8}, dataset="digits",
                epochs=epochs, batch_size=64, lr=0.1, val_split=200, out=str(out), name=name, workers=0,
                tensorboard=False, plots=False, checkpoint_every=0.0)


def _child(plan: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DENSEKIT_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(plan)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def reference(out: Path, epochs: int = 3) -> tuple[Path, list]:
    """Train uninterrupted; return its run folder and the trace of its events."""
    trace = out / "trace.jsonl"
    done = _child({"config": config(out, "reference", epochs), "resume": False, "trace": str(trace)})
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    return out / "reference", events


def _is(kind, which=None, step0=None):
    """An event predicate: ``kind`` (save, step, eval...), its second field, an epoch-end save or not."""
    return lambda e: e[0] == kind and (which is None or e[1] == which) and (
        step0 is None or (e[3] == 0) == step0)


# Every write window of a run, as (event, variant, first or last occurrence): the very first save,
# a step, mid-epoch and epoch-end saves of last.pt (during and just before), best.pt, between the
# two saves, validation after the epoch's last mid-epoch save, the metrics, the test pass, the
# summary and the final status.
WINDOWS = [(_is("save", "last"), "mid", "first"), (_is("step"), "at", "first"),
           (_is("save", "last", step0=False), "before", "first"), (_is("eval", "val"), "at", "first"),
           (_is("save", "best"), "mid", "first"), (_is("save", "last", step0=True), "before", "first"),
           (_is("metrics"), "at", "first"), (_is("save", "best"), "before", "last"),
           (_is("save", "last", step0=False), "mid", "last"), (_is("eval", "val"), "at", "last"),
           (_is("save", "last", step0=True), "mid", "last"), (_is("metrics"), "at", "last"),
           (_is("eval", "test"), "at", "first"), (_is("json"), "at", "first"), (_is("status", "finished"), "at", "first")]


def kill_points(events: list, n: int, seed: int | None = None) -> list:
    """At least ``n`` kill points in trace order: every window of ``WINDOWS`` (where the trace has
    it), then points spread evenly over the trace (``seed`` None) or drawn at random."""
    candidates = [(i, [e, v]) for i, e in enumerate(events) for v in KILLABLE[e[0]]]
    chosen, keys = {}, set()

    def take(i, point):
        key = json.dumps(point[0])
        if key not in keys and i not in chosen:
            keys.add(key)
            chosen[i] = point
            return True
        return False
    for pred, variant, which in WINDOWS:
        matches = [(i, p) for i, p in candidates if pred(p[0]) and p[1] == variant]
        for i, point in (matches if which == "first" else matches[::-1]):
            if take(i, point):
                break
    rest = [c for c in candidates if json.dumps(c[1][0]) not in keys]
    if seed is None:
        rest = rest[::max(1, len(rest) // max(n - len(chosen), 1))]
    else:
        random.Random(seed).shuffle(rest)
    for i, point in rest:
        if len(chosen) >= n:
            break
        take(i, point)
    return [chosen[i] for i in sorted(chosen)]


def kill_and_resume(out: Path, points: list, epochs: int = 3) -> tuple[Path, int]:
    """Train a run that is SIGKILLed at each point in turn and resumed; return its folder and the
    number of kills that happened."""
    run, hit, kills = out / "killed", out / "hit.json", 0
    plan = {"config": config(out, "killed", epochs), "run": str(run), "hit": str(hit)}
    remaining, first = list(points), True
    for _ in range(len(points) + 2):
        hit.unlink(missing_ok=True)
        done = _child({**plan, "resume": not first, "kill": remaining[0] if remaining else None})
        if done.returncode == 0:
            break
        if done.returncode != -9 or not hit.exists():
            raise RuntimeError(f"child exited {done.returncode} at kill point {remaining[:1]}:\n{done.stderr[-3000:]}")
        assert json.loads(hit.read_text()) == remaining[0]
        remaining.pop(0)
        first, kills = False, kills + 1
    if remaining:
        raise RuntimeError(f"the run finished without reaching kill points {remaining[:3]}")
    return run, kills


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two finished runs, ignoring wall-clock figures."""
    import torch
    from densekit.engine.checkpoint import load_checkpoint
    from densekit.engine.run import RunFolder
    out = []
    for which in ("last", "best"):
        pa, pb = load_checkpoint(a / "checkpoints" / f"{which}.pt"), load_checkpoint(b / "checkpoints" / f"{which}.pt")
        for part in ("state_dict", "optimizer"):
            ta, tb = _tensors(pa[part]), _tensors(pb[part])
            if ta.keys() != tb.keys() or any(not torch.equal(ta[k], tb[k]) for k in ta):
                out.append(f"{which}.pt {part}")
        if pa["progress"]["global_step"] != pb["progress"]["global_step"]:
            out.append(f"{which}.pt progress")
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}   # noqa: E731
    if [strip(r) for r in RunFolder(a).read_metrics()] != [strip(r) for r in RunFolder(b).read_metrics()]:
        out.append("metrics.jsonl")
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    if strip(sa) != strip(sb):
        out.append(f"summary.json: {strip(sa)} != {strip(sb)}")
    for p in (a, b):
        if RunFolder(p).read_status().get("status") != "finished":
            out.append(f"{p.name} status {RunFolder(p).read_status().get('status')}")
        if list(p.rglob(".*.tmp")):
            out.append(f"{p.name} has orphan temporary files")
    return out


def _tensors(obj, prefix="") -> dict:
    import torch
    if torch.is_tensor(obj):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, value in enumerate(obj) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {prefix: torch.tensor(float(obj))} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="random kill points from this seed (-1: the CI selection)")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="densekit-kill-") as tmp:
        out = Path(tmp)
        t0 = time.time()
        ref, events = reference(out, args.epochs)
        points = kill_points(events, args.kills, None if args.seed < 0 else args.seed)
        run, kills = kill_and_resume(out, points, args.epochs)
        diff = differences(ref, run)
        print(json.dumps({"events": len(events), "kills": kills, "identical": not diff, "differences": diff,
                          "kinds": sorted({p[0][0] + ":" + p[1] for p in points}), "seconds": round(time.time() - t0, 1)}))
        sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
