"""Inference speed of one model across backends, measured in one process so the ratios compare
like with like: PyTorch eager (densekit's predict path: channels-last, the precision given),
eager with BatchNorm folded (``models/fold.py``), ``torch.compile``, and the exported files
through their runtime predictors (``predictions.Predictor.logits``): onnxruntime float32
(``onnx``) and int8 (``onnx-int8``), OpenVINO float32 / bf16 (``openvino``, per precision asked)
and int8 (``openvino-int8``). Every backend runs the same ``engine.infer.InferenceModel``
(normalisation inside, no test-time augmentation) on raw pixels, so each does what a deployed
prediction does; the files are written as ``densekit export`` writes them (folded, dynamic batch;
int8: ``quantize.py``).

``model``: a registered name (random weights: speed does not depend on them; int8 calibrated on
random pixels) or a run folder / checkpoint (its weights; int8 calibrated on its training images,
and each row gains ``top1`` and ``top1_vs_float`` in points on the first ``TOP1_IMAGES`` test
images). Reported per backend and precision: images/s, latency p50 and p99 per call at each batch
size, and the file size of exported backends. Threads: as many intra-op threads everywhere.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..engine.precision import autocast, precision_name, resolve_precision
from ..errors import DensekitError

BACKENDS = ("eager", "folded", "compiled", "onnx", "onnx-int8", "openvino", "openvino-int8")
EXPORTED = {"onnx": "onnx", "onnx-int8": "onnx", "openvino": "openvino", "openvino-int8": "openvino"}
TOP1_IMAGES = 2000


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
    return {"images_per_s": batch / float(np.median(t)), "steps": len(t),
            "p50_ms": 1e3 * float(np.percentile(t, 50)), "p99_ms": 1e3 * float(np.percentile(t, 99))}


def _exported(graph, spec, name: str, backend: str, precision: str, calibration: np.ndarray, folder: Path,
              threads: int):
    """(predictor, file MB) of ``graph`` exported as ``backend`` in ``precision``: export's own
    writers (``exporter._onnx_bytes``, ``_write``) and ``quantize.quantize_onnx``, without the gate
    (random weights have no accuracy to keep; a run's rows report top-1 instead)."""
    from .. import __version__
    from . import quantize
    from .export import _onnx_bytes, _predictor, _write
    c, h, w = spec.input_shape
    meta = {**spec.to_metadata(), "tta_in_graph": True, "folded_batchnorm": 0, "model": {"name": name, "args": {}},
            "weights": "plain", "dataset": None, "metrics": {}, "versions": {"densekit": __version__},
            "input": {"name": "pixels"}, "output": {"name": "logits"}}
    model, _ = _onnx_bytes(graph, torch.rand(2, c, h, w) * 255, meta, True, None, [])
    if backend.endswith("int8"):
        model, meta["quantization"] = quantize.quantize_onnx(model, calibration), "int8"
    elif precision == "bfloat16":
        meta["quantization"] = "bf16"
    path = folder / f"{backend}-{precision}{'.onnx' if EXPORTED[backend] == 'onnx' else '.xml'}"
    _write(EXPORTED[backend], path, model, meta)
    size = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
    predictor = _predictor(path)
    if threads:
        predictor = type(predictor)(path, device="cpu", threads=threads)
    return predictor, size / 2 ** 20


def run_infer_bench(model: str, input_size=None, backends=BACKENDS, precisions=("fp32", "auto"),
                    batch_sizes=(1, 64), steps: int = 100, max_s: float = 10.0, compile_batch_sizes=None,
                    threads: int | None = None) -> dict:
    """Measure ``model`` on the CPU; see the module docstring. ``compile_batch_sizes`` limits the compiled backend to those batch sizes (each one
    compiles anew; on 2 cores a DenseNet-121 compile takes minutes). ``threads``: intra-op threads
    of torch and onnxruntime alike (None: torch's current setting)."""
    import logging
    from ..engine.infer import InferenceModel
    from ..models import create_model, get_entry
    from ..models.fold import fold_batchnorm
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise DensekitError(f"unknown inference backend {', '.join(sorted(unknown))}: choose {', '.join(BACKENDS)}")
    from ..spec import InputSpec
    run = Path(model).exists()
    if run:   # a trained run: its weights, its input spec, no test-time augmentation
        from ..engine.infer import TorchPredictor
        ref = TorchPredictor(model, device="cpu", tta="none", precision="fp32")
        net, spec = ref.net, ref.spec.replace(dtype=None)
        c, h, w = spec.input_shape
        name, mean, std = ref.architecture["name"], list(spec.mean), list(spec.std)
    else:
        c, h, w = input_size or get_entry(model).meta.get("input_size", (3, 224, 224))
        torch.manual_seed(0)
        net = create_model(model, in_channels=c).eval()
        name, mean, std = model, [0.5] * c, [0.25] * c
        spec = InputSpec(tuple(str(i) for i in range(net.classifier.out_features)) if hasattr(net, "classifier")
                         and hasattr(net.classifier, "out_features") else ("0",), c, (h, w), tuple(mean), tuple(std))
    if threads:
        torch.set_num_threads(int(threads))
    threads = torch.get_num_threads()
    dtypes = {}
    for p in precisions:
        dtype = resolve_precision(p, torch.device("cpu"))
        dtypes[precision_name(dtype)] = dtype
    graphs = {"eager": InferenceModel(net, mean, std, c).eval()}
    if {"folded", "compiled"} & set(backends) or set(EXPORTED) & set(backends):
        graphs["folded"] = InferenceModel(fold_batchnorm(net)[0], mean, std, c).eval()
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    calibration = test = None
    if set(EXPORTED) & set(backends):
        if run:
            from . import quantize, verify as gate
            calibration = quantize.calibration_pixels(spec, ref.dataset, 256)[0]
            test = gate.labelled_split(spec, ref.dataset, limit=TOP1_IMAGES)
        else:
            calibration = np.random.default_rng(0).integers(0, 256, (64, c, h, w), dtype=np.uint8)
    for g in graphs.values():
        g.to(memory_format=torch.channels_last)
    rows, folder = [], Path(tempfile.mkdtemp(prefix="densekit-bench-"))
    try:
        for backend in backends:
            rows += _backend_rows(backend, graphs, spec, name, dtypes, batch_sizes, compile_batch_sizes,
                                  calibration, test, folder, threads, steps, max_s)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _compare(rows, batch_sizes)
    return {"model": model, "input_size": [c, h, w], "threads": threads, "torch": torch.__version__,
            "cpu_features": cpu_features(), "rows": rows}


def _precisions(backend: str, dtypes: dict) -> list:
    if backend.endswith("int8"):
        return [("int8", None)]
    if backend == "onnx":   # onnxruntime's CPU kernels have no bf16 convolution
        return [("float32", None)]
    if backend == "openvino":
        return [(p, None) for p in dtypes if p in ("float32", "bfloat16")]
    return list(dtypes.items())


def _backend_rows(backend, graphs, spec, name, dtypes, batch_sizes, compile_batch_sizes, calibration, test,
                  folder, threads, steps, max_s) -> list[dict]:
    c, h, w = spec.input_shape
    rows = []
    for pname, dtype in _precisions(backend, dtypes):
        predictor = None
        if backend in EXPORTED:
            predictor, size = _exported(graphs["folded"], spec, name, backend, pname, calibration, folder, threads)
        for batch in batch_sizes:
            if backend == "compiled" and compile_batch_sizes is not None and batch not in compile_batch_sizes:
                continue
            x = (torch.rand(batch, c, h, w) * 255).round()
            row = {"backend": backend, "precision": pname, "batch": batch, "batch_size": batch}
            if predictor is not None:
                xn = x.numpy().astype(np.uint8)
                times = _timed(lambda: predictor.logits(xn), steps if batch == 1 else max(3, steps // 10), max_s)
                row["file_mb"] = round(size, 3)
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
        if test is not None and backend != "compiled":   # folded computes what eager does
            top1 = _top1(predictor, graphs["eager" if backend == "eager" else "folded"], dtype, test)
            for row in rows:
                if row["precision"] == pname:
                    row["top1"] = top1
    return rows


def _top1(predictor, graph, dtype, test) -> float:
    """Top-1 (percent) of a backend on the labelled test images."""
    from .verify import CHUNK
    x, y, _ = test
    if predictor is None:
        def logits(chunk):
            with torch.inference_mode(), autocast("cpu", dtype):
                return graph(torch.from_numpy(chunk).float()).float().numpy()
    else:
        logits = predictor.logits
    pred = np.concatenate([logits(x[i:i + CHUNK]).argmax(1) for i in range(0, len(x), CHUNK)])
    return 100 * float((pred == y).mean())


def _compare(rows: list[dict], batch_sizes):
    """Ratios against the fastest eager precision at each batch size, and top-1 against eager
    float32, from this same run."""
    for batch in batch_sizes:
        eager = [r for r in rows if r["backend"] == "eager" and r["batch_size"] == batch]
        if eager:
            best = max(r["images_per_s"] for r in eager)
            for r in rows:
                if r["batch_size"] == batch:
                    r["vs_fastest_eager"] = r["images_per_s"] / best
    float_top1 = next((r["top1"] for r in rows if r["backend"] == "eager" and r["precision"] == "float32"
                       and "top1" in r), None)
    for r in rows:
        if "top1" in r and float_top1 is not None:
            r["top1_vs_float"] = r["top1"] - float_top1


def cpu_features() -> list[str]:
    """The processor's vector and matrix extensions that CPU kernels pick from (Linux /proc/cpuinfo)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
            if f in flags]


def format_infer_report(r: dict) -> str:
    c, h, w = r["input_size"]
    lines = [f"{r['model']}  infer  input {c}x{h}x{w}  cpu ({', '.join(r.get('cpu_features', [])) or '?'})  "
             f"{r['threads']} threads  torch {r['torch']}",
             f"{'backend':13} {'precision':9} {'batch':>5} {'images/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'vs eager':>8} {'steps':>5} {'file MB':>7} {'top-1':>6} {'vs fp32':>7}"]
    nan = float("nan")
    for row in r["rows"]:
        lines.append(f"{row['backend']:13} {row['precision']:9} {row['batch_size']:5d} {row['images_per_s']:10.1f} "
                     f"{row.get('p50_ms', nan):8.2f} {row.get('p99_ms', nan):8.2f} "
                     f"{row.get('vs_fastest_eager', nan):7.2f}x {row['steps']:5d} {row.get('file_mb', nan):7.2f} "
                     f"{row.get('top1', nan):6.2f} {row.get('top1_vs_float', nan):+7.2f}"
                     + (f"  compile {row['compile_s']:.0f} s" if "compile_s" in row else ""))
    return "\n".join(lines)
