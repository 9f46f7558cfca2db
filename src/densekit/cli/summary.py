"""`densekit summary MODEL [--input-size C,H,W] [--json]`: per-stage shapes, parameters, FLOPs."""
from __future__ import annotations

from .common import add_input_size, add_json_flag, parse_input_size, print_json
from ..models import create_model, get_entry
from ..models.summary import format_summary, summarize


def add_parser(sub):
    p = sub.add_parser("summary", help="per-stage table of a model: output shape, channels, parameters, FLOPs")
    p.add_argument("model", help="a name from `densekit models`")
    add_input_size(p)
    p.add_argument("--num-classes", type=int, help="override the classifier's outputs")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args):
    entry = get_entry(args.model)
    own = tuple(entry.meta.get("input_size", (3, 224, 224)))
    size = parse_input_size(args.input_size, own[0]) if args.input_size else own
    model = create_model(args.model, num_classes=args.num_classes, in_channels=size[0])
    summary = summarize(model, size)
    if args.json:
        print_json({"model": args.model, **summary})
    else:
        print(format_summary(summary, args.model))
    return 0
