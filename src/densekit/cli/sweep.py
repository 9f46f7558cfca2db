"""`densekit sweep --grid lr=0.1,0.05 --grid growth_rate=12,24 [train flags]`: every combination
trains into its own run folder under ``--out/--name``; a ranked table is printed at the end.

Grid keys are training settings (any `densekit train` flag) or model arguments (``growth_rate``,
``block_config=[3,3],[6,6]``...). Every other flag, --recipe and --config apply to all runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_json_flag, print_json
from .train import add_config_flags, config_from_args


def add_parser(sub):
    p = sub.add_parser("sweep", help="train every combination of a hyper-parameter grid and rank the runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a setting or model argument and its values (repeatable: the grid is the product)")
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
    from ..sweep import check_rank_by, parse_grid, run_sweep, sweep_table
    check_rank_by(args.rank_by)
    base = config_from_args(args)
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
