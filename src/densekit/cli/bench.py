"""`densekit bench MODEL`: training or inference throughput and peak memory, against the naive
reference DenseNet measured in the same run."""
from __future__ import annotations

import argparse

from .common import add_input_size, add_json_flag, parse_input_size, print_json


def add_parser(sub):
    p = sub.add_parser("bench", help="measure images/s, peak memory and GFLOP/s against the naive reference")
    p.add_argument("model", help="a registered model name, e.g. densenet121")
    add_input_size(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="autocast dtype; auto is bf16 where the device runs it natively, else fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="memory format (default: the device's fast default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model; reports compile time")
    p.add_argument("--memory-efficient", action="store_true", help="recompute concatenations in backward")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate densekit and reference this many times, keep each one's best")
    p.add_argument("--reference", choices=["naive", "same"], default="naive",
                   help="naive: float32 NCHW eager reference; same: the reference with densekit's settings")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args):
    from .. import bench
    from ..models import get_entry
    size = None
    if args.input_size:
        channels = get_entry(args.model).meta.get("input_size", (3,))[0]
        size = parse_input_size(args.input_size, channels)
    result = bench.run_bench(args.model, size, args.batch_size, args.mode, args.precision, args.compile,
                             args.memory_efficient, args.device, args.steps, channels_last=args.channels_last,
                             reference=args.reference, rounds=args.rounds)
    if args.json:
        print_json(result)
    else:
        print(bench.format_report(result))
    return 0
