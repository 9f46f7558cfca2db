"""`densekit runs [DIR]`: the runs under a folder as a table; `densekit runs show RUN`: one run in full."""
from __future__ import annotations

from ..errors import DensekitError
from .common import add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("runs", help="list training runs (name, model, dataset, status, accuracy, duration)",
                       description=__doc__, usage="densekit runs [DIR] [--json] | densekit runs show RUN [--json]")
    # `show` and DIR share the first position; argparse cannot put a sub-verb after an optional positional.
    p.add_argument("words", nargs="*", metavar="DIR | show RUN", help="folder holding run folders (default: runs)")
    add_json_flag(p, "each run (runs show: the run in full)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tracking.runs import describe_run, run_details   # here: building the command line stays torch-free
    words = args.words
    if words[:1] == ["show"]:
        if len(words) != 2:
            raise DensekitError("usage: densekit runs show RUN (a run folder, e.g. runs/my-run)")
        if args.json:
            print_json(run_details(words[1]))
        else:
            print(describe_run(words[1]))
        return 0
    if len(words) > 1:
        raise DensekitError(f"densekit runs takes one folder, got {len(words)}: {' '.join(words)}")
    args.dir = words[0] if words else "runs"
    return list_runs(args)


def list_runs(args) -> int:
    from ..tracking.runs import find_runs, run_row, runs_table
    rows = [run_row(p, args.dir) for p in find_runs(args.dir)]
    if args.json:
        print_json(*rows)
    elif not rows:
        print(f"no runs under {args.dir} (train with --out {args.dir} to put them there)")
    else:
        print(runs_table(rows))
    return 0
