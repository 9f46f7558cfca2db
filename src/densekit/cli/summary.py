"""`densekit summary MODEL [--input-size C,H,W] [--json]`: per-stage shapes, parameters, FLOPs."""
from __future__ import annotations

import json

from ..errors import DensekitError
from ..models import create_model, get_entry
from ..models.summary import format_summary, summarize


def add_parser(sub):
    p = sub.add_parser("summary", help="per-stage table of a model: output shape, channels, parameters, FLOPs")
    p.add_argument("model", help="a name from `densekit models`")
    p.add_argument("--input-size", help="C,H,W of one input image (default: the model's own, e.g. 3,224,224)")
    p.add_argument("--num-classes", type=int, help="override the classifier's outputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise DensekitError(f"--input-size {text!r} is not C,H,W; write e.g. --input-size 3,32,32")
    return size


def run(args):
    entry = get_entry(args.model)
    size = parse_size(args.input_size) if args.input_size else tuple(entry.meta.get("input_size", (3, 224, 224)))
    model = create_model(args.model, num_classes=args.num_classes, in_channels=size[0])
    summary = summarize(model, size)
    if args.json:
        print(json.dumps({"model": args.model, **summary}))
    else:
        print(format_summary(summary, args.model))
    return 0
