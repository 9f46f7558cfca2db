"""Inference speed of one model across backends, measured in one process so the ratios compare
like with like: PyTorch eager (densekit's predict path: channels-last, the precision given),
eager with BatchNorm folded (``models/fold.py``), ``torch.compile``, and onnxruntime on the
exported graph. Every backend runs the same ``engine.infer.InferenceModel`` (normalisation inside,
no test-time augmentation) on raw pixels, so each does what a deployed prediction does.

Reported per backend and precision: images/s at each batch size and, at batch 1, latency p50 and
p99 over the timed calls. onnxruntime runs float32 (its CPU kernels have no bf16 convolution),
with as many intra-op threads as torch uses.
"""
from __future__ import annotations

import io
import time

import numpy as np
import torch

from .engine.precision import autocast, precision_name, resolve_precision
from .errors import DensekitError

BACKENDS = ("eager", "folded", "compiled", "onnx")


def _timed(call, steps: int, max_s: float) -> list[float]:
    """Seconds per call: one untimed warm-up call, then ``steps`` calls or ``max_s`` seconds (at
    least 3 calls), whichever ends first."""
    call()
    times, start = [], time.perf_counter()
    while len(times) < steps and (len(times) < 3 or time.perf_counter() - start < max_s):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float], batch: int) -> dict:
    t = np.sort(np.asarray(times))
    out = {"images_per_s": batch / float(np.median(t)), "steps": len(t)}
    if batch == 1:
        out.update(p50_ms=1e3 * float(np.percentile(t, 50)), p99_ms=1e3 * float(np.percentile(t, 99)))
    return out


def _onnx_session(graph, c: int, h: int, w: int, threads: int):
    import onnxruntime as ort
    buf = io.BytesIO()
    example = torch.rand(2, c, h, w) * 255
    program = torch.onnx.export(graph, (example,), dynamo=True, external_data=False, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                                input_names=["pixels"], output_names=["logits"])
    program.save(buf)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def run_infer_bench(model: str, input_size=None, backends=BACKENDS, precisions=("fp32", "auto"),
                    batch_sizes=(1, 64), steps: int = 100, max_s: float = 10.0, compile_batch_sizes=None,
                    threads: int | None = None) -> dict:
    """Measure ``model`` (random weights: speed does not depend on them) on the CPU; see the module
    docstring. ``compile_batch_sizes`` limits the compiled backend to those batch sizes (each one
    compiles anew; on 2 cores a DenseNet-121 compile takes minutes). ``threads``: intra-op threads
    of torch and onnxruntime alike (None: torch's current setting)."""
    import logging
    from .engine.infer import InferenceModel
    from .models import create_model, get_entry
    from .models.fold import fold_batchnorm
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise DensekitError(f"unknown inference backend {', '.join(sorted(unknown))}: choose {', '.join(BACKENDS)}")
    c, h, w = input_size or get_entry(model).meta.get("input_size", (3, 224, 224))
    torch.manual_seed(0)
    net = create_model(model, in_channels=c).eval()
    mean, std = [0.5] * c, [0.25] * c
    if threads:
        torch.set_num_threads(int(threads))
    threads = torch.get_num_threads()
    dtypes = {}
    for p in precisions:
        dtype = resolve_precision(p, torch.device("cpu"))
        dtypes[precision_name(dtype)] = dtype
    graphs = {"eager": InferenceModel(net, mean, std, c).eval()}
    if {"folded", "compiled"} & set(backends):
        graphs["folded"] = InferenceModel(fold_batchnorm(net)[0], mean, std, c).eval()
    for g in graphs.values():
        g.to(memory_format=torch.channels_last)
    rows = []
    for backend in backends:
        for pname, dtype in (dtypes.items() if backend != "onnx" else [("float32", None)]):
            for batch in batch_sizes:
                if backend == "compiled" and compile_batch_sizes is not None and batch not in compile_batch_sizes:
                    continue
                x = (torch.rand(batch, c, h, w) * 255).round()
                row = {"backend": backend, "precision": pname, "batch_size": batch}
                if backend == "onnx":
                    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
                    sess = _onnx_session(graphs["eager"], c, h, w, threads)
                    xn = x.numpy()
                    times = _timed(lambda: sess.run(None, {"pixels": xn}), steps, max_s)
                else:
                    graph = graphs["eager" if backend == "eager" else "folded"]
                    if backend == "compiled":
                        # compiles the folded graph: what a deployment would compile
                        graph = torch.compile(graph)
                    xc = x.contiguous(memory_format=torch.channels_last)

                    def call(graph=graph, xc=xc, dtype=dtype):
                        with torch.inference_mode(), autocast("cpu", dtype):
                            return graph(xc)
                    if backend == "compiled":
                        t0 = time.perf_counter()
                        call()
                        row["compile_s"] = time.perf_counter() - t0
                    times = _timed(call, steps if batch == 1 else max(3, steps // 10), max_s)
                row.update(_stats(times, batch))
                rows.append(row)
    # Ratios against the fastest eager precision at each batch size, from this same run.
    for batch in batch_sizes:
        eager = [r for r in rows if r["backend"] == "eager" and r["batch_size"] == batch]
        if eager:
            best = max(r["images_per_s"] for r in eager)
            for r in rows:
                if r["batch_size"] == batch:
                    r["vs_fastest_eager"] = r["images_per_s"] / best
    return {"model": model, "input_size": [c, h, w], "threads": threads, "torch": torch.__version__,
            "rows": rows}


def format_infer_report(r: dict) -> str:
    c, h, w = r["input_size"]
    lines = [f"{r['model']}  infer  input {c}x{h}x{w}  cpu  {r['threads']} threads  torch {r['torch']}",
             f"{'backend':9} {'precision':9} {'batch':>5} {'images/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'vs eager':>8} {'steps':>5}"]
    for row in r["rows"]:
        lines.append(f"{row['backend']:9} {row['precision']:9} {row['batch_size']:5d} {row['images_per_s']:10.1f} "
                     f"{row.get('p50_ms', float('nan')):8.2f} {row.get('p99_ms', float('nan')):8.2f} "
                     f"{row.get('vs_fastest_eager', float('nan')):7.2f}x {row['steps']:5d}"
                     + (f"  compile {row['compile_s']:.0f} s" if "compile_s" in row else ""))
    return "\n".join(lines)
