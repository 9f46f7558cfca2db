"""`densekit bench MODEL`: training or inference throughput and peak memory, against the naive
reference DenseNet measured in the same run."""
from __future__ import annotations

import argparse

from .common import DEVICE_HELP, add_json_flag, print_json
from .summary import INPUT_SIZE_HELP


def add_parser(sub):
    p = sub.add_parser("bench", help="measure images/s, peak memory and GFLOP/s against the naive reference")
    p.add_argument("model", help="a registered model name, e.g. densenet121 (with --backends: or a run folder)")
    p.add_argument("--input-size", default=None, help=INPUT_SIZE_HELP)
    p.add_argument("--batch-size", type=int, default=32, help="images per timed step (default 32)")
    p.add_argument("--mode", choices=["train", "infer"], default="train",
                   help="train: forward + backward + optimizer step; infer: forward only (default train)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast dtype; auto (the default) is bf16 where the device runs it natively, else fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="memory format (default: the device's fast default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model; reports compile time")
    p.add_argument("--memory-efficient", action="store_true", help="recompute concatenations in backward")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--steps", type=int, default=10, help="timed steps, after 2 warm-up steps (default 10)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate densekit and reference this many times, keep each one's best (default 1)")
    p.add_argument("--reference", choices=["naive", "same"], default="naive",
                   help="naive: float32 NCHW eager reference (the default); same: the reference with densekit's settings")
    p.add_argument("--backends", help="with --mode infer: compare these inference backends instead of the "
                   "reference: eager, folded, compiled, onnx, onnx-int8, openvino, openvino-int8 (images/s and "
                   "latency at --batch-sizes; MODEL may be a run folder: then top-1 against float too)")
    p.add_argument("--batch-sizes", default="1,64", help="with --backends: batch sizes to time (default 1,64)")
    p.add_argument("--threads", type=int, help="with --backends: intra-op threads for torch and onnxruntime")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="with --backends: stop timing one setting after this many seconds, at least 3 calls (default 10)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args):
    from ..workflows import bench
    from ..errors import DensekitError
    from ..models.registry import input_size
    size = input_size(args.model, args.input_size) if args.input_size else None
    if args.mode != "infer" or not args.backends:
        from pathlib import Path
        if Path(args.model).exists():
            raise DensekitError(f"{args.model}: a run folder is benchmarked with --mode infer --backends ...; "
                                "otherwise give a registered model name")
    if args.backends:
        if args.mode != "infer":
            raise DensekitError("--backends compares inference backends: add --mode infer")
        from ..workflows import bench_infer
        try:
            batches = tuple(int(b) for b in args.batch_sizes.split(","))
        except ValueError:
            raise DensekitError(f"--batch-sizes must be integers separated by commas, got {args.batch_sizes!r}") from None
        precisions = ("fp32", args.precision) if args.precision not in ("fp32",) else ("fp32",)
        result = bench_infer.run_infer_bench(args.model, size, tuple(args.backends.split(",")), precisions,
                                             batches, steps=args.steps, max_s=args.max_seconds, threads=args.threads)
        if args.json:   # one object per measured row, each with the run's context
            context = {k: v for k, v in result.items() if k != "rows"}
            print_json(*({**context, **row} for row in result["rows"]))
        else:
            print(bench_infer.format_infer_report(result))
        return 0
    result = bench.run_bench(args.model, size, args.batch_size, args.mode, args.precision, args.compile,
                             args.memory_efficient, args.device, args.steps, channels_last=args.channels_last,
                             reference=args.reference, rounds=args.rounds)
    if args.json:
        print_json(result)
    else:
        print(bench.format_report(result))
    return 0
