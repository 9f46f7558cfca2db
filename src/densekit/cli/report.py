"""`densekit report RUN --out report.html`: one self-contained HTML page for a run."""
from __future__ import annotations

from pathlib import Path

from .common import add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("report", help="write a run's self-contained HTML report (settings, curves, "
                       "confusion matrix, per-class accuracy, sample predictions)", description=__doc__)
    p.add_argument("run", help="a run folder")
    p.add_argument("--out", help="the HTML file to write (default: RUN/report.html)")
    add_json_flag(p, "the report's path")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tracking.report import write_report
    out = write_report(args.run, args.out or Path(args.run) / "report.html")
    if args.json:
        print_json({"report": str(out), "run": args.run})
    else:
        print(f"report written to {out}")
    return 0
