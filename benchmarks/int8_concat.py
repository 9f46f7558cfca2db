"""How DenseNet concatenations should be quantised: int8 variants of one trained run against its
float graph on the test split (top-1, largest class-recall drop, agreement) and their batch-64
speed, in one process.

    python benchmarks/int8_concat.py RUN_DIR [--limit 2000] [--threads 2]

Variants: Conv+Gemm only, Concat float; Conv+Gemm+Relu+Concat with a scale
per tensor (onnxruntime's way: every concat input requantised to the output's scale); the same
with each dense block's concat tensors sharing one range (quantize.concat_groups, densekit's default); onnxruntime's
default op set with shared ranges. Figures: docs/export.md.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from densekit.workflows import export as exporter, quantize, verify as gate
from densekit.runtime import OnnxModel

VARIANTS = [("conv+gemm, concat float", ["Conv", "Gemm", "MatMul"], False),
            ("+relu+concat, scale per tensor", quantize.OPS, False),
            ("+relu+concat, shared concat range (default)", quantize.OPS, True),
            ("onnxruntime default ops, shared", None, True)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    exporter.export(args.run, "onnx", out=tmp / "f.onnx", dynamic_batch=True, verify=False)
    ref = OnnxModel(tmp / "f.onnx", device="cpu", threads=args.threads)
    meta = exporter.read_metadata(tmp / "f.onnx")
    x, y, source = gate.labelled_split(ref.spec, meta["dataset"], limit=args.limit)
    calib, _ = quantize.calibration_pixels(ref.spec, meta["dataset"], quantize.CALIBRATE)
    float_bytes = (tmp / "f.onnx").read_bytes()

    def speed(model):
        model.logits(x[:64])
        t0 = time.perf_counter()
        model.logits(x[:64])
        model.logits(x[:64])
        return 128 / (time.perf_counter() - t0)
    print(f"{source}; float batch-64 {speed(ref):.0f} images/s")
    for name, ops, share in VARIANTS:
        path = tmp / "q.onnx"
        q = quantize.quantize_onnx(float_bytes, calib, ops=ops, share_concat=share)
        path.write_bytes(exporter._stamped(q, {**meta, "quantization": "int8"}))
        model = OnnxModel(path, device="cpu", threads=args.threads)
        f = gate.measure(ref, model, x, y, source, 100, 100)
        print(f"{name:36s} top-1 {f['top1']:.2f} (float {f['top1_float']:.2f}, drop {f['top1_drop']:.2f}) "
              f"worst class -{f['worst_class_drop']:.2f} agreement {f['agreement']:.2f}% "
              f"batch-64 {speed(model):.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
