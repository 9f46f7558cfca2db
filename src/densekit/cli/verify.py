"""`densekit verify MODEL --dataset DATASET`: the accuracy gate of `densekit export` (top-1 and the
largest per-class recall drop against the float model) on any exported file and any labelled data."""
from __future__ import annotations

from .common import add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("verify", help="check an exported .onnx/.xml file's accuracy against its float model")
    p.add_argument("model", metavar="MODEL", help="an .onnx or .xml file written by `densekit export`")
    p.add_argument("--dataset", required=True, help="labelled images with the model's classes (a dataset name, "
                   "folder:PATH, ...: see `densekit data list`)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default test")
    p.add_argument("--reference", metavar="RUN_OR_FILE",
                   help="the float model: a run folder, checkpoint or float export (default: the file's run folder)")
    p.add_argument("--limit", type=int, default=10_000, help="images to check, the split's first (default 10000)")
    p.add_argument("--max-drop", type=float, default=0.5, metavar="POINTS", help="top-1 loss allowed (default 0.5)")
    p.add_argument("--max-class-drop", type=float, default=2.0, metavar="POINTS",
                   help="loss of any one class's recall allowed (default 2)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.verify import describe, verify
    figures = verify(args.model, args.dataset, args.reference, args.split, args.limit, args.max_drop,
                     args.max_class_drop)
    if args.json:
        print_json(figures)
    else:
        print(f"passed: {describe(figures)}")
    return 0
