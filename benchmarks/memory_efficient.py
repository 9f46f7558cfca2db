"""Peak training memory and step time, plain vs memory-efficient mode (Pleiss et al., arXiv 1707.06990).

Each (depth, mode) is one fresh process running ``densekit.workflows.bench.measure``: SGD training steps,
batch 64, 32x32 input; peak memory is the process's peak RSS on CPU and
``torch.cuda.max_memory_allocated`` on CUDA. Depth grows the concatenations quadratically, so
the plain mode's memory grows much faster with depth than the memory-efficient mode's.

    python benchmarks/memory_efficient.py [--device cuda] [--precision fp32] [--depths 100,190]

``--interleaved`` measures only the time cost, on CPU, robustly on a shared machine: one process,
one thread, plain and memory-efficient steps alternated, thread CPU time.
"""
from __future__ import annotations

import argparse
import json

import copy
import statistics
import time

import torch

from densekit.workflows.bench import measure_in_fresh_process, resolve_device
from densekit.models import create_model


def interleaved_cost(name: str, overrides: dict, batch: int, size: int, steps: int, dtype) -> tuple[float, float]:
    """Median thread-CPU seconds per step of (plain, memory-efficient), steps alternated."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    plain = create_model(name, **overrides).to(memory_format=torch.channels_last)
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = {}
    for model in (plain, efficient):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        times[model] = []

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        model.step = step
    for i in range(steps + 1):
        for model in (plain, efficient):
            t = time.thread_time()
            model.step()
            if i:  # the first step of each warms up
                times[model].append(time.thread_time() - t)
    return statistics.median(times[plain]), statistics.median(times[efficient])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--growth-rate", type=int, default=40)
    ap.add_argument("--depths", default="100,190", help="DenseNet-BC depths, 6n+4")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--interleaved", action="store_true", help="CPU time cost only, see above")
    ap.add_argument("--model", default=None, help="with --interleaved: a registered model instead of --depths")
    ap.add_argument("--size", type=int, default=32, help="with --interleaved: input side")
    args = ap.parse_args()
    device = resolve_device(args.device)
    dtype = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}[args.precision]
    if args.interleaved:
        configs = [(args.model, {})] if args.model else [
            (f"densenet-bc-{d}-k{args.growth_rate}",
             {"growth_rate": args.growth_rate, "num_init_features": 2 * args.growth_rate,
              "block_config": [(d - 4) // 6] * 3}) for d in (int(d) for d in args.depths.split(","))]
        for name, overrides in configs:
            base = args.model or "densenet-bc-190-k40"
            plain, eff = interleaved_cost(base, overrides, args.batch, args.size, args.steps,
                                          dtype and getattr(torch, dtype))
            print(json.dumps({"model": name, "precision": args.precision, "size": args.size,
                              "batch": args.batch, "plain_cpu_s": round(plain, 3), "efficient_cpu_s": round(eff, 3),
                              "time_cost": round(eff / plain - 1, 3), "clock": "thread CPU time, 1 thread"}))
        return
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        n = (depth - 4) // 6
        overrides = {"growth_rate": args.growth_rate, "num_init_features": 2 * args.growth_rate,
                     "block_config": [n, n, n]}
        result = {}
        for efficient in (False, True):
            spec = {"model": "densenet-bc-190-k40", "overrides": overrides, "input_size": [3, 32, 32],
                    "batch_size": args.batch, "mode": "train", "device": str(device), "dtype": dtype,
                    "channels_last": device.type == "cpu", "compile": False,
                    "memory_efficient": efficient, "steps": args.steps, "warmup": 1, "reference": False}
            result[efficient] = measure_in_fresh_process(spec)
        plain, eff = result[False], result[True]
        row = {"model": f"densenet-bc-{depth}-k{args.growth_rate}", "device": str(device),
               "precision": args.precision, "batch": args.batch,
               "plain_peak_mb": round(plain["peak_memory_mb"], 1), "efficient_peak_mb": round(eff["peak_memory_mb"], 1),
               "memory_ratio": round(eff["peak_memory_mb"] / plain["peak_memory_mb"], 3),
               "plain_ms": round(plain["ms_per_step"], 1), "efficient_ms": round(eff["ms_per_step"], 1),
               "time_cost": round(eff["ms_per_step"] / plain["ms_per_step"] - 1, 3),
               "memory_kind": plain["memory_kind"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'model':24} {'plain MB':>9} {'efficient MB':>13} {'ratio':>6} {'plain ms':>9} {'eff. ms':>8} {'time +':>7}")
    for r in rows:
        print(f"{r['model']:24} {r['plain_peak_mb']:9.0f} {r['efficient_peak_mb']:13.0f} {r['memory_ratio']:6.2f} "
              f"{r['plain_ms']:9.1f} {r['efficient_ms']:8.1f} {100 * r['time_cost']:6.0f}%")


if __name__ == "__main__":
    main()
