"""`densekit sweep --grid lr=0.1,0.05 --grid growth_rate=12,24 [train flags]`: every combination
trains into its own run folder under ``--out/--name``; a ranked table is printed at the end.

Grid keys are training settings (any `densekit train` flag) or model arguments (``growth_rate``,
``block_config=[3,3],[6,6]``...). Every other flag, --recipe and --config apply to all runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .train import add_config_flags, config_from_args


def add_parser(sub):
    p = sub.add_parser("sweep", help="train every combination of a hyper-parameter grid and rank the runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a setting or model argument and its values (repeatable: the grid is the product)")
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--json", action="store_true", help="print the ranked runs as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..sweep import parse_grid, run_sweep, sweep_table
    base = config_from_args(args)
    rows = run_sweep(base, parse_grid(args.grid), verbose=not args.quiet and not args.json)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(sweep_table(rows))
        print(f"run folders in {Path(rows[0]['path']).parent}" if rows else "")
    return 0 if any(r["status"] == "finished" for r in rows) else 1
