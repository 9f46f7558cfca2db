"""Inference backends compared in one process per model (densekit.workflows.bench_infer), and the top-1
agreement of an exported ONNX file with PyTorch on a whole test split.

    python benchmarks/infer.py speed densenet-c-fmnist densenet-bc-100-k12 --threads 1
    python benchmarks/infer.py speed densenet121 --threads 1 --max-seconds 5 --no-compile
    python benchmarks/infer.py agree RUN_DIR            # ONNX vs float32 torch and vs densekit.predict

Appends one JSON object per model to benchmarks/results/infer_cpu.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "infer_cpu.jsonl"


def speed(args):
    from densekit.workflows.bench_infer import format_infer_report, run_infer_bench
    backends = ("eager", "folded", "onnx") if args.no_compile else ("eager", "folded", "compiled", "onnx")
    for model in args.models:
        t0 = time.perf_counter()
        r = run_infer_bench(model, backends=backends, steps=args.steps, max_s=args.max_seconds,
                            threads=args.threads, compile_batch_sizes=(1,))
        r.update(kind="speed", wall_s=time.perf_counter() - t0, date=time.strftime("%Y-%m-%d %H:%M"))
        print(format_infer_report(r), flush=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(r) + "\n")


def agree(args):
    import torch
    import densekit
    from densekit.workflows.export import verify_export
    torch.set_num_threads(args.threads or torch.get_num_threads())
    path = densekit.export(args.run, "onnx", dynamic_batch=True, out=Path(args.run) / "bench.onnx", verify=False)["path"]
    check = verify_export(path, args.run, limit=10 ** 9)             # the whole test split, float32 torch
    payload_ds = densekit.load_dataset(densekit.runtime.OnnxModel(path).meta["dataset"], "test")
    images = [payload_ds[i][0] for i in range(len(payload_ds))]
    onnx_top1 = [p["top_k"][0]["index"] for p in densekit.predict(path, images, top_k=1)]
    torch_top1 = [p["top_k"][0]["index"] for p in densekit.predict(args.run, images, top_k=1)]   # default precision
    labels = [payload_ds[i][1] for i in range(len(payload_ds))]
    r = {"kind": "agreement", "run": str(args.run), "images": len(images), "vs_float32_torch": check,
         "vs_densekit_predict": sum(a == b for a, b in zip(onnx_top1, torch_top1)) / len(images),
         "onnx_top1": sum(a == y for a, y in zip(onnx_top1, labels)) / len(images),
         "torch_top1": sum(a == y for a, y in zip(torch_top1, labels)) / len(images),
         "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(r, indent=1))
    with RESULTS.open("a") as f:
        f.write(json.dumps(r) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("models", nargs="+")
    s.add_argument("--threads", type=int)
    s.add_argument("--steps", type=int, default=100)
    s.add_argument("--max-seconds", type=float, default=5.0)
    s.add_argument("--no-compile", action="store_true")
    s.set_defaults(func=speed)
    a = sub.add_parser("agree")
    a.add_argument("run")
    a.add_argument("--threads", type=int)
    a.set_defaults(func=agree)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
