"""`densekit sweep --grid lr=0.1,0.05 --grid growth_rate=12,24 [train flags]`: every combination
trains into its own run folder under ``--out/--name``; a ranked table is printed at the end.

`densekit sweep --search optuna --trials 20 --space 'lr=log(1e-3,0.3)' --space 'augment=choice(flip,crop)'`:
Optuna's TPE proposes each trial, the median pruner stops trials that fall behind; the study is kept
in the sweep folder, so the same command continues a killed search; --time-budget is the whole search's.

Grid and space keys are training settings (any `densekit train` flag) or model arguments (``growth_rate``,
``block_config=[3,3],[6,6]``...). Every other flag, --recipe and --config apply to all runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DensekitError
from .common import add_json_flag, print_json
from .train import add_config_flags, config_from_args


def add_parser(sub):
    p = sub.add_parser("sweep", help="train every combination of a hyper-parameter grid and rank the runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a setting or model argument and its values (repeatable: the grid is the product)")
    p.add_argument("--search", choices=("grid", "optuna"), default="grid",
                   help="grid: every combination of --grid; optuna: --trials runs proposed by Optuna's TPE sampler "
                        "from --space, pruned by the median rule (docs/search.md)")
    p.add_argument("--space", action="append", metavar="KEY=SPEC",
                   help="with --search optuna: a setting or model argument and where to search it: log(LO,HI), "
                        "uniform(LO,HI), int(LO,HI) or choice(A,B,...) (repeatable)")
    p.add_argument("--trials", type=int, metavar="N", help="with --search optuna: how many trials (default 20)")
    p.add_argument("--pruner", default="median", metavar="NAME",
                   help="with --search optuna: median (default), halving (successive halving) or none")
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--rank-by", default="val_top1", metavar="METRIC",
                   help="rank by the best value over the epochs of this per-epoch metric: val_top1 (default), "
                        "val_top5, val_loss, train_top1 or train_loss; the test set is shown, never ranked by")
    add_json_flag(p, "each run, best first")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.sweep import check_rank_by, parse_grid, run_sweep, sweep_table
    check_rank_by(args.rank_by)
    base = config_from_args(args)
    if args.search == "optuna":
        return _search(args, base)
    if not args.grid:
        raise DensekitError("densekit sweep needs --grid KEY=V1,V2 (or --search optuna with --space)")
    given = [f for f in ("space", "trials") if getattr(args, f) is not None]
    if given or args.pruner != "median":
        raise DensekitError(f"--{(given or ['pruner'])[0]} acts with --search optuna only")
    if args.rank_by.startswith("val_") and not base.val_split:
        print(f"densekit: warning: --val-split 0: runs rank by {args.rank_by} only if the source has its own "
              "val split", file=sys.stderr)
    rows = run_sweep(base, parse_grid(args.grid), verbose=not args.quiet and not args.json, rank_by=args.rank_by)
    if args.json:
        print_json(*rows)
    else:
        print(sweep_table(rows))
        print(f"run folders in {Path(rows[0]['path']).parent}" if rows else "")
    if rows and all(r["rank_value"] is None for r in rows):
        print(f"densekit: warning: no run recorded {args.rank_by}, so the order is arbitrary; give --val-split",
              file=sys.stderr)
    return 0 if any(r["status"] == "finished" for r in rows) else 1


def _search(args, base) -> int:
    from ..workflows.search import parse_space, run_search, search_table
    if args.grid:
        raise DensekitError("--grid is for --search grid; with --search optuna give --space KEY=SPEC")
    space = parse_space(args.space or [])
    result = run_search(base, space, 20 if args.trials is None else args.trials,
                        verbose=not args.quiet and not args.json, rank_by=args.rank_by, pruner=args.pruner)
    rows = result["rows"]
    if args.json:
        print_json(*[{**r, "command": result["command"]} if r is result["best"] else r for r in rows])
        return 0 if result["best"] else 1
    print(search_table(result))
    if result["best"]:
        print(f"best trial {result['best']['name']} (by {args.rank_by}, validation only): {result['command']}")
    print(f"study {result['study']}; plot {result['plot']}")
    return 0 if result["best"] else 1
