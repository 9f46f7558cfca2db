"""`densekit summary MODEL [--input-size C,H,W] [--json]`: per-stage shapes, parameters, FLOPs."""
from __future__ import annotations

from .common import add_json_flag, print_json


INPUT_SIZE_HELP = ("one input image: C,H,W such as 3,32,32, or one side N (square, the model's channels) "
                   "(default: the model's own, see `densekit models`)")


def add_parser(sub):
    p = sub.add_parser("summary", help="per-stage table of a model: output shape, channels, parameters, FLOPs")
    p.add_argument("model", help="a name from `densekit models`")
    p.add_argument("--input-size", help=INPUT_SIZE_HELP)
    p.add_argument("--num-classes", type=int, help="override the classifier's outputs")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args):
    from ..models import create_model
    from ..models.registry import input_size
    from ..models.summary import format_summary, summarize
    size = input_size(args.model, args.input_size)
    model = create_model(args.model, num_classes=args.num_classes, in_channels=size[0])
    summary = summarize(model, size)
    if args.json:
        print_json({"model": args.model, **summary})
    else:
        print(format_summary(summary, args.model))
    return 0
