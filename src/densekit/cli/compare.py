"""`densekit compare MODEL... --dataset D [train flags]`: train each under the same budget and
settings, one table. Every `densekit train` flag, --recipe and --config apply to all the models."""
from __future__ import annotations

import argparse

from ..errors import DensekitError
from .common import add_json_flag, print_json
from .train import add_config_flags, fields_from_args


def add_parser(sub):
    p = sub.add_parser("compare", help="train several models under the same budget and tabulate params, "
                                       "FLOPs, speed, memory and test accuracy",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="names from `densekit models`")
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--same-process", action="store_true",
                   help="train all in this process (faster start; peak memory then accumulates)")
    add_json_flag(p, "each model's row")
    p.add_argument("--quiet", action="store_true", help="no training progress output")
    add_config_flags(p)
    for action in p._actions:    # compare's own defaults for two of train's flags
        if action.dest == "epochs":
            action.help = "epochs per model (default 1 here)"
        elif action.dest == "out":
            action.help = "run folders go to OUT/compare-<time>/<model> (default runs)"
    p.set_defaults(func=run)


def run(args):
    from ..workflows.compare import compare, format_table
    fields = fields_from_args(args)
    for key in ("model", "name"):
        if key in fields:
            raise DensekitError(f"compare names its models and runs itself; drop --{key} and list the models: "
                                "densekit compare MODEL MODEL ...")
    if "dataset" not in fields:
        raise DensekitError("compare needs --dataset (see `densekit data list`), e.g. --dataset digits")
    dataset, epochs, out = fields.pop("dataset"), fields.pop("epochs", 1), fields.pop("out", "runs")
    rows = compare(args.models, dataset, epochs, isolate=not args.same_process,
                   verbose=not (args.quiet or args.json), out=out, **fields)
    if args.json:
        print_json(*rows)
    else:
        print(format_table(rows))
        budget = f", {fields['time_budget']}" if fields.get("time_budget") else ""
        print(f"(same budget: {epochs} epoch(s){budget} on {dataset}; GFLOPs per image; peak MB is CUDA max "
              "allocated or, on CPU, process max RSS)")
    return 0
