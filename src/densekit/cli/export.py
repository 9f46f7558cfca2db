"""`densekit export RUN_OR_CHECKPOINT --format onnx|torchscript|safetensors`: an inference file
with its metadata, checked against the PyTorch model on real images."""
from __future__ import annotations

import argparse

from .common import RUN_HELP, add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("export", help="write an ONNX / TorchScript / safetensors file for deployment, "
                       "verified against PyTorch")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help=RUN_HELP)
    p.add_argument("--format", choices=["onnx", "torchscript", "safetensors"], default="onnx",
                   help="onnx (onnxruntime, no PyTorch), torchscript, or safetensors (plain weights); default onnx")
    p.add_argument("--out", help="the file to write (default: model.onnx etc. in the run folder)")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: any batch size (default: batch 1)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; below 18 uses the "
                   "TorchScript-based exporter)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="export the EMA weights (default: when the checkpoint has them)")
    p.add_argument("--tta", choices=["none", "flip"], help="test-time augmentation inside the graph "
                   "(default: the run's own)")
    p.add_argument("--no-fold", dest="fold", action="store_false",
                   help="keep BatchNorm layers separate instead of folding them into convolutions")
    p.add_argument("--check", nargs="+", metavar="IMAGE_OR_DIR",
                   help="check on these images instead of the run's test split")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip running the file against the PyTorch model")
    add_json_flag(p, "what was written and the check's figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..exporter import export
    r = export(args.checkpoint, args.format, out=args.out, dynamic_batch=args.dynamic_batch, opset=args.opset,
               ema=args.ema, check=args.check, tta=args.tta, fold=args.fold, verify=args.verify)
    if args.json:
        print_json(r)
        return 0
    for note in r["notes"]:
        print(f"note: {note}")
    if "check" in r:
        c = r["check"]
        if "label_set_agreement" in c:   # multi-label: compared as sigmoid probabilities and label sets
            print(f"checked on {c['source']}: max |probability difference| {c['max_abs_diff']:.2g} "
                  f"(allowed {c['tolerance']:.2g}), label sets agree {100 * c['label_set_agreement']:.2f}%")
        else:
            print(f"checked on {c['source']}: max |logit difference| {c['max_abs_diff']:.2g} "
                  f"(allowed {c['tolerance']:.2g}), top-1 agreement {100 * c['top1_agreement']:.2f}%")
    print(f"wrote {r['path']} ({r['format']}, {r['exporter']}, {r['weights']} weights, tta {r['tta']})")
    return 0
