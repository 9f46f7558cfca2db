"""`densekit explain RUN IMAGE... --out DIR`: Grad-CAM or saliency heat maps over the images."""
from __future__ import annotations

from .common import DEVICE_HELP, IMAGES_HELP, RUN_HELP, add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("explain", help="heat maps of why the model chose its class (Grad-CAM or saliency)")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help=RUN_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help=IMAGES_HELP)
    p.add_argument("--method", choices=["gradcam", "saliency"], default="gradcam",
                   help="gradcam: the last dense block's maps weighted by their gradients (default); "
                        "saliency: |d score / d pixel|")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for one PNG per image")
    p.add_argument("--top-k", type=int, default=3, help="classes named in each PNG's title (default 3)")
    p.add_argument("--target", metavar="CLASS", help="explain this class (name or index) instead of each top-1")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_json_flag(p, "each image's result (without the heat map arrays)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.explain import explain
    results = explain(args.checkpoint, args.images, method=args.method, out=args.out, top_k=args.top_k,
                      device=args.device, target=args.target)
    rows = [{k: v for k, v in r.items() if k not in ("heatmap", "image")} for r in results]
    if args.json:
        print_json(*rows)
    else:
        for r in rows:
            guesses = ", ".join(f"{g['label']} {100 * g['prob']:.1f}%" for g in r["top_k"])
            print(f"{r['file']}: {guesses} -> {r['png']}")
    return 0
