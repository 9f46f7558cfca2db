"""`densekit export RUN_OR_CHECKPOINT --format onnx|openvino|torchscript|safetensors [--int8]`: an
inference file with its metadata, checked against the PyTorch model on real images (a lossy int8 or
bf16 file: gated on its accuracy against the float graph)."""
from __future__ import annotations

import argparse

from .common import RUN_HELP, add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("export", help="write an ONNX / TorchScript / safetensors file for deployment, "
                       "verified against PyTorch")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help=RUN_HELP)
    p.add_argument("--format", choices=["onnx", "openvino", "torchscript", "safetensors"], default="onnx",
                   help="onnx (onnxruntime, no PyTorch), openvino (the IR, .xml + .bin, of the ONNX graph; the "
                        "openvino extra), torchscript, or safetensors (plain weights); default onnx")
    p.add_argument("--out", help="the file to write (default: model.onnx, model.xml etc. in the run folder)")
    p.add_argument("--int8", dest="precision", action="store_const", const="int8", default="fp32",
                   help="onnx/openvino: static int8 quantisation (QDQ, per-channel weights), gated on accuracy; "
                        "the same as --precision int8 (default: fp32)")
    p.add_argument("--precision", dest="precision", choices=["fp32", "bf16", "int8"],
                   help="fp32 (default), int8 (= --int8), bf16 (openvino: bf16 inference precision, AMX where present)")
    p.add_argument("--calibrate", type=int, metavar="N",
                   help="--int8: training images that set the activation ranges (default 512)")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="int8/bf16 gate: largest top-1 loss on the test split, in points (default 0.5)")
    p.add_argument("--max-class-drop", type=float, metavar="POINTS",
                   help="int8/bf16 gate: largest loss of any class's recall, in points (default 2)")
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
    from ..workflows.export import export
    r = export(args.checkpoint, args.format, out=args.out, dynamic_batch=args.dynamic_batch, opset=args.opset,
               ema=args.ema, check=args.check, tta=args.tta, fold=args.fold, verify=args.verify,
               precision=args.precision, calibrate=args.calibrate, max_drop=args.max_drop,
               max_class_drop=args.max_class_drop)
    if args.json:
        print_json(r)
        return 0
    for note in r["notes"]:
        print(f"note: {note}")
    if "gate" in r:
        from ..workflows.verify import describe
        print(f"accuracy gate passed: {describe(r['gate'])}")
    if "check" in r:
        c = r["check"]
        if "label_set_agreement" in c:   # multi-label: compared as sigmoid probabilities and label sets
            print(f"checked on {c['source']}: max |probability difference| {c['max_abs_diff']:.2g} "
                  f"(allowed {c['tolerance']:.2g}), label sets agree {100 * c['label_set_agreement']:.2f}%")
        else:
            print(f"checked on {c['source']}: max |logit difference| {c['max_abs_diff']:.2g} "
                  f"(allowed {c['tolerance']:.2g}), top-1 agreement {100 * c['top1_agreement']:.2f}%")
    print(f"wrote {r['path']} ({r['format']} {r['precision']}, {r['exporter']}, {r['weights']} weights, "
          f"tta {r['tta']})")
    return 0
