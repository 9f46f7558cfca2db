"""`densekit compare MODEL... --dataset D --epochs N`: train each under the same budget, one table."""
from __future__ import annotations

import json

from ..compare import compare, format_table
from ..config import parse_duration


def add_parser(sub):
    p = sub.add_parser("compare", help="train several models under the same budget and tabulate params, "
                                       "FLOPs, speed, memory and test accuracy")
    p.add_argument("models", nargs="+", metavar="MODEL", help="names from `densekit models`")
    p.add_argument("--dataset", required=True, help="data source (see `densekit data list`)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--time-budget", metavar="DURATION", help="per model, e.g. 5m; plans each schedule to it")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop"])
    p.add_argument("--image-size", type=int)
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", default="runs", help="run folders go to OUT/compare-<time>/<model>")
    p.add_argument("--same-process", action="store_true",
                   help="train all in this process (faster start; peak memory then accumulates)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    p.add_argument("--quiet", action="store_true", help="no training progress output")
    p.set_defaults(func=run)


def run(args):
    config = {k: getattr(args, k) for k in ("batch_size", "lr", "optimizer", "image_size", "device", "seed")
              if getattr(args, k) is not None}
    if args.time_budget:
        config["time_budget"] = parse_duration(args.time_budget)
    rows = compare(args.models, args.dataset, args.epochs, isolate=not args.same_process,
                   verbose=not (args.quiet or args.json), out=args.out, **config)
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows))
        print(f"(same budget: {args.epochs} epoch(s){', ' + args.time_budget if args.time_budget else ''} on "
              f"{args.dataset}; GFLOPs per image; peak MB is CUDA max allocated or, on CPU, process max RSS)")
    return 0
