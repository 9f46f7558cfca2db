"""`densekit predict RUN_OR_CHECKPOINT IMAGE_OR_DIR...`: top-k classes with probabilities."""
from __future__ import annotations

import sys

from .common import add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("predict", help="classify image files (PNG/JPEG/BMP/GIF/WebP, any mode and size)")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder, a checkpoint, or an .onnx file from `densekit export` (no PyTorch needed)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", choices=["none", "flip"],
                   help="test-time augmentation: average the image and its mirror (flip) or not; default: the run's own")
    add_json_flag(p, "one object per image")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import predict
    results = predict(args.checkpoint, args.images, top_k=args.top_k, device=args.device, tta=args.tta)
    failed = [r for r in results if "error" in r]
    if args.json:
        print_json(*results)
    else:
        for r in results:
            if "error" in r:
                continue
            guesses = ", ".join(f"{g['label']} {100 * g['prob']:.1f}%" for g in r["top_k"])
            print(f"{r['file']}: {guesses}")
    for r in failed:
        print(f"densekit: error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
