"""Throughput and peak memory of a model against the naive reference DenseNet, on one device.

Each measurement runs in a fresh Python process, so that the peak resident memory (RSS) it
reports on CPU belongs to that model alone; on CUDA the peak is the allocator's. The same
process also counts the floating-point operations of one step of the real model
(``FlopCounterMode``), which gives the achieved GFLOP/s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from ..allocator import keep_freed_memory
from ..errors import DensekitError
from ..models.registry import parse_input_size  # noqa: F401  (densekit.workflows.bench's public name)

REFERENCE_SETTINGS = ("naive", "same")


def _malloc() -> str:
    """This process's allocator: densekit's glibc tuning, or the system's defaults (allocator.py)."""
    return "densekit" if keep_freed_memory() else "system"


def _build(spec: dict, device: torch.device) -> torch.nn.Module:
    from ..models import create_model
    from ..models.reference import reference_model
    model = create_model(spec["model"], in_channels=spec["input_size"][0], **spec.get("overrides", {}))
    if spec["memory_efficient"]:
        model.memory_efficient = True
    if spec["reference"]:
        model = reference_model(model)
    model = model.to(device)
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def measure(spec: dict) -> dict:
    """Time ``spec["steps"]`` steps after warm-up, in this process; see ``run_bench`` for keys."""
    from ..engine.precision import autocast, peak_memory_mb
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"]) if spec["dtype"] else None
    torch.manual_seed(0)
    model = _build(spec, device)
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    x = torch.randn(spec["batch_size"], *spec["input_size"], device=device).contiguous(memory_format=fmt)
    train = spec["mode"] == "train"
    model.train(train)
    run = torch.compile(model) if spec["compile"] else model
    if train:
        y = torch.randint(0, getattr(model, "classifier").out_features, (len(x),), device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        if train:
            opt.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = torch.nn.functional.cross_entropy(run(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode(), autocast(device, dtype):
                run(x)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    step()  # the first step pays for compilation, if any, and for one-off allocations
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(spec["warmup"]):
        step()
    flops = _count_flops(model, x, train, device, dtype)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    result = {"images_per_s": spec["batch_size"] / median, "ms_per_step": 1e3 * median,
              "ms_per_step_min": 1e3 * min(times), "gflop_per_step": flops / 1e9,
              "gflops": flops / 1e9 / median, "malloc": _malloc()}
    if spec["compile"]:
        result["compile_s"] = first_s
    result["peak_memory_mb"] = peak_memory_mb(device)
    result["memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of a fresh process"
    return result


def _count_flops(model, x, train, device, dtype) -> int:
    """FLOPs of one step of the eager model (forward, plus backward when training)."""
    from torch.utils.flop_counter import FlopCounterMode
    from ..engine.precision import autocast
    counter = FlopCounterMode(display=False)
    with counter:
        if train:
            with autocast(device, dtype):
                out = model(x)
            out.float().sum().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast(device, dtype):
                model(x)
    return counter.get_total_flops()


def measure_in_fresh_process(spec: dict) -> dict:
    """``measure(spec)`` in a new Python process, so that its peak RSS is its own (and its
    allocator: ``spec["malloc"]`` is densekit's tuning or glibc's defaults, see allocator.py)."""
    env = dict(os.environ, DENSEKIT_MALLOC=spec["malloc"])
    proc = subprocess.run([sys.executable, "-m", "densekit.workflows.bench", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DensekitError(f"benchmark of {spec['model']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(model: str, input_size: tuple[int, int, int] | None = None, batch_size: int = 32,
              mode: str = "train", precision: str = "auto", compile: bool = False,
              memory_efficient: bool = False, device: str = "auto", steps: int = 10, warmup: int = 2,
              channels_last: bool | None = None, reference: str = "naive", rounds: int = 1) -> dict:
    """Benchmark ``model`` and the naive reference of the same configuration.

    ``reference="naive"`` runs the reference as the paper draws it (float32, NCHW, eager);
    ``"same"`` gives it densekit's precision, layout and compilation, which isolates what the
    layers themselves gain. ``rounds`` alternates densekit and reference runs and keeps each
    one's best round, since a shared machine's noise only ever slows a run down.
    """
    from ..engine.precision import fast_defaults, pick_device, resolve_precision
    from ..models import get_entry
    entry = get_entry(model)
    if input_size is None:
        input_size = tuple(entry.meta.get("input_size", (3, 224, 224)))
    if mode not in ("train", "infer"):
        raise DensekitError(f"--mode must be train or infer, got {mode!r}")
    if reference not in REFERENCE_SETTINGS:
        raise DensekitError(f"--reference must be one of {', '.join(REFERENCE_SETTINGS)}, got {reference!r}")
    if min(batch_size, steps, rounds) < 1:
        raise DensekitError("--batch-size, --steps and --rounds must be at least 1")
    dev = pick_device(device)
    dtype = resolve_precision(precision, dev)
    if channels_last is None:
        channels_last = fast_defaults(dev)["channels_last"]
    spec = {"model": model, "input_size": list(input_size), "batch_size": batch_size, "mode": mode,
            "device": str(dev), "dtype": str(dtype).replace("torch.", "") if dtype else None,
            "channels_last": channels_last, "compile": compile, "memory_efficient": memory_efficient,
            "steps": steps, "warmup": warmup, "reference": False,
            "malloc": _malloc()}
    ref_spec = dict(spec, reference=True, memory_efficient=False)
    if reference == "naive":
        ref_spec.update(dtype=None, channels_last=False, compile=False, malloc="system")
    runs = {"densekit": [], "reference": []}
    for _ in range(rounds):
        runs["densekit"].append(measure_in_fresh_process(spec))
        runs["reference"].append(measure_in_fresh_process(ref_spec))
    best = {k: max(v, key=lambda r: r["images_per_s"]) for k, v in runs.items()}
    for k, v in runs.items():  # memory does not depend on the noise: report the largest peak
        best[k]["peak_memory_mb"] = max(r["peak_memory_mb"] for r in v)
    return {"model": model, "device": str(dev), "mode": mode, "batch_size": batch_size,
            "input_size": list(input_size), "precision": spec["dtype"] or "float32",
            "channels_last": channels_last, "compile": compile, "memory_efficient": memory_efficient,
            "steps": steps, "rounds": rounds, "torch": torch.__version__,
            "reference_settings": {"precision": ref_spec["dtype"] or "float32",
                                   "channels_last": ref_spec["channels_last"], "compile": ref_spec["compile"],
                                   "malloc": ref_spec["malloc"]},
            "densekit": best["densekit"], "reference": best["reference"],
            "speedup": best["densekit"]["images_per_s"] / best["reference"]["images_per_s"],
            "memory_ratio": best["densekit"]["peak_memory_mb"] / best["reference"]["peak_memory_mb"]}


def format_report(r: dict) -> str:
    c, h, w = r["input_size"]
    ref = r["reference_settings"]
    lines = [f"{r['model']}  {r['mode']}  batch {r['batch_size']}  input {c}x{h}x{w}  {r['device']}  "
             f"torch {r['torch']}",
             f"densekit:  {r['precision']}, {'channels-last' if r['channels_last'] else 'NCHW'}"
             f"{', compiled' if r['compile'] else ''}{', memory-efficient' if r['memory_efficient'] else ''}",
             f"reference: {ref['precision']}, {'channels-last' if ref['channels_last'] else 'NCHW'}"
             f"{', compiled' if ref['compile'] else ''}"
             f"{', glibc malloc defaults' if ref.get('malloc') == 'system' else ''} (plain torch.cat DenseNet)",
             f"{'':10} {'images/s':>10} {'ms/step':>9} {'peak MB':>9} {'GFLOP/step':>11} {'GFLOP/s':>8}"]
    for name in ("densekit", "reference"):
        m = r[name]
        lines.append(f"{name:10} {m['images_per_s']:10.1f} {m['ms_per_step']:9.1f} {m['peak_memory_mb']:9.0f} "
                     f"{m['gflop_per_step']:11.2f} {m['gflops']:8.1f}"
                     + (f"   compile {m['compile_s']:.1f} s" if "compile_s" in m else ""))
    lines.append(f"speedup {r['speedup']:.2f}x   memory {r['memory_ratio']:.2f}x of the reference "
                 f"({r['densekit']['memory_kind']})")
    return "\n".join(lines)


if __name__ == "__main__":  # the fresh process of one measurement: spec in, result out, as JSON
    print(json.dumps(measure(json.loads(sys.argv[1]))))
