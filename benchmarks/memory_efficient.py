"""Peak training memory and step time, plain vs memory-efficient mode (Pleiss et al., arXiv 1707.06990).

Each (depth, mode) is one fresh process running ``densekit.bench.measure``: SGD training steps,
batch 64, 32x32 input; peak memory is the process's peak RSS on CPU and
``torch.cuda.max_memory_allocated`` on CUDA. Depth grows the concatenations quadratically, so
the plain mode's memory grows much faster with depth than the memory-efficient mode's.

    python benchmarks/memory_efficient.py [--device cuda] [--precision fp32] [--depths 100,190]
"""
from __future__ import annotations

import argparse
import json

from densekit.bench import measure_in_fresh_process, resolve_device


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--growth-rate", type=int, default=40)
    ap.add_argument("--depths", default="100,190", help="DenseNet-BC depths, 6n+4")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    device = resolve_device(args.device)
    dtype = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}[args.precision]
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
