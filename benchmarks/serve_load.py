"""Load test of `densekit serve` on 127.0.0.1: requests/s and p50/p99 latency at several
concurrencies, with dynamic batching (the defaults), without (--max-batch-size 1), and with
batching but the forward passes in the server's own process (--no-forward-process), against the
model's own batch-64 images/s measured in the same run (the ceiling).

The servers run at once, each loaded with the same model, and are measured in alternation
(``--rounds`` short slices each, per concurrency), so that all see the same load on a shared
machine; the ratios are the figures to read. Each config at each concurrency is bounded by
``--requests`` and ``--seconds``; the servers are stopped at the end, whatever happens. The
ceiling is the model's ``logits`` on batches of 64 images in this process (the servers idle),
with the servers' ``--threads``. Loopback only.

    PYTHONPATH=src python benchmarks/serve_load.py                  # trains a quick run if none is given
    PYTHONPATH=src python benchmarks/serve_load.py --run runs/NAME --concurrency 1,8,32 --json out.json
    PYTHONPATH=src python benchmarks/serve_load.py --model densenet-bc-100-k12 --image-size 32 --concurrency 32

Without ``--run`` it trains ``--model`` (default densenet-c-fmnist) on Fashion-MNIST for
``--train-seconds`` (default 30 s; digits upscaled to 28x28 where Fashion-MNIST is absent): a real
run folder, whose accuracy does not matter for speed. Each request is one 28x28 PNG test image
as the body (``Content-Type: image/png``) on a keep-alive connection per client. The client is
a few lines of asyncio streams rather than an HTTP library: on a 2-core machine the client shares
the cores with the server, and httpx's own ~1 ms of CPU per request would be measured instead.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))   # served.py, also when loaded by a test
from served import Server  # noqa: E402

CONFIGS = {"batching": ["--max-batch-size", "32"],   # plus --max-delay-ms from the command line
           "no batching": ["--max-batch-size", "1"],
           "in-process": ["--max-batch-size", "32", "--no-forward-process"]}
# One intra-op thread per forward pass by default: the server's event loop (HTTP, decoding) and this
# client need the other core of a 2-core machine, and OpenMP threads that wait on a busy core slow
# every operator (a batch-1 forward of 9 ms took 340 ms with 2 threads at load 11).


def quick_run(out: Path, seconds: float, model: str = "densenet-c-fmnist", image_size: int | None = None) -> Path:
    import densekit
    from densekit.errors import DensekitError
    base = dict(model=model, time_budget=seconds, out=str(out), workers=0, tensorboard=False, plots=False,
                image_size=image_size)
    try:
        densekit.load_dataset("fashion-mnist", "test")
        cfg = densekit.TrainConfig(dataset="fashion-mnist", name="serve-load", **base)
    except DensekitError:
        cfg = densekit.TrainConfig(dataset="digits", name="serve-load", **{**base, "image_size": image_size or 28})
    return densekit.train(cfg, verbose=False).dir


def test_images(run: Path, count: int = 64) -> list[bytes]:
    """PNG bytes of the run's first test images."""
    import densekit
    from PIL import Image
    info = json.loads((run / "summary.json").read_text())
    size = 28 if info["dataset"] == "digits" else None
    ds = densekit.load_dataset(info["dataset"], "test", image_size=size)
    out = []
    for i in range(min(count, len(ds))):
        x, _ = ds[i]
        buf = io.BytesIO()
        Image.fromarray(x.permute(1, 2, 0).squeeze(-1).numpy()).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def batches(server: Server) -> tuple[float, float]:
    """(forward passes, images in them) so far, from the server's /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    count = float(re.search(r"^densekit_batch_size_count (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^densekit_batch_size_sum (\S+)$", text, re.M).group(1))
    return count, total


def ceiling(source: Path, threads: int, batch: int = 64, windows: int = 3, seconds: float = 2) -> float:
    """The model's own images/s on batches of ``batch`` (its test-time augmentation included), in
    this process, with ``threads`` intra-op threads: what a server of it could at best answer. The
    best of ``windows`` windows of at least 3 passes and ``seconds`` each: the least disturbed."""
    import densekit
    import numpy as np
    from densekit.allocator import keep_freed_memory
    keep_freed_memory()   # as the servers' processes run (the densekit command, its forward process)
    model = densekit.load_predictor(source, threads=threads)
    pixels = np.random.default_rng(0).integers(0, 256, (batch, *model.input_shape), dtype=np.uint8)
    model.logits(pixels)   # the first pass sets up kernels
    best = 0.0
    for _ in range(windows):
        passes, start = 0, time.perf_counter()
        while passes < 3 or time.perf_counter() - start < seconds:
            model.logits(pixels)
            passes += 1
        best = max(best, passes * batch / (time.perf_counter() - start))
    return best


def request_bytes(image: bytes) -> bytes:
    return (b"POST /v1/predict?top_k=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(image), image))


async def load(url: str, images: list[bytes], concurrency: int, requests: int, seconds: float) -> dict:
    """``concurrency`` clients, each on its own keep-alive connection, sending one image per request
    until ``requests`` are done or time is up."""
    host, port = url.removeprefix("http://").split(":")
    payloads = [request_bytes(im) for im in images]
    latencies, errors, sent = [], 0, 0
    deadline = time.perf_counter() + seconds

    async def one_client():
        nonlocal errors, sent
        reader = writer = None
        while sent < requests and time.perf_counter() < deadline:
            payload = payloads[sent % len(payloads)]
            sent += 1
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(payload)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                ok = head.startswith(b"HTTP/1.1 200")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, AttributeError):
                ok, writer = False, None
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
        if writer is not None:
            writer.close()
    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "seconds": elapsed}


def summarize(slices: list[dict], concurrency: int) -> dict:
    latencies = [x for r in slices for x in r["latencies"]]
    elapsed = sum(r["seconds"] for r in slices)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {"concurrency": concurrency, "ok": len(latencies), "errors": sum(r["errors"] for r in slices),
            "seconds": elapsed, "rps": len(latencies) / elapsed, "p50_ms": 1000 * q[49], "p99_ms": 1000 * q[98]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder to serve (default: train a quick one)")
    ap.add_argument("--serve", help="what the servers serve, e.g. the run's .onnx export (default: the run)")
    ap.add_argument("--model", default="densenet-c-fmnist", help="the quick run's model")
    ap.add_argument("--image-size", type=int, help="the quick run's --image-size (default: the data's)")
    ap.add_argument("--train-seconds", type=float, default=30)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="which servers to run, of " + ", ".join(CONFIGS))
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=600, help="per config and concurrency")
    ap.add_argument("--seconds", type=float, default=15, help="per config and concurrency")
    ap.add_argument("--rounds", type=int, default=5, help="alternating slices the requests and seconds are split into")
    ap.add_argument("--threads", type=int, default=1, help="the servers' --threads")
    ap.add_argument("--max-delay-ms", default="5", help="the batching server's --max-delay-ms")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="serve-load-"))
    run = Path(args.run) if args.run else quick_run(scratch / "runs", args.train_seconds, args.model, args.image_size)
    source = Path(args.serve) if args.serve else run
    images = test_images(run)
    names = args.configs.split(",")
    if unknown := set(names) - set(CONFIGS):
        ap.error(f"--configs: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    configs = {name: CONFIGS[name] + (["--max-delay-ms", args.max_delay_ms] if name != "no batching" else [])
               for name in names}
    servers = {name: Server(source, ["--threads", str(args.threads), *flags],
                            scratch / f"{name.replace(' ', '-')}.log") for name, flags in configs.items()}
    best = {name: {} for name in configs}
    try:
        for s in servers.values():
            s.wait_ready()
        top = ceiling(source, args.threads)   # the servers are up and idle
        for s in servers.values():       # warm-up: first connections, first batches of each size
            asyncio.run(load(s.url, images, max(levels), 2 * max(levels), 10))
        for c in levels:
            slices = {name: [] for name in configs}
            start = {name: (batches(s), s.cpu_seconds()) for name, s in servers.items()}
            for _ in range(args.rounds):   # short slices in alternation: both servers see the same load
                for name, s in servers.items():
                    slices[name].append(asyncio.run(load(s.url, images, c, args.requests // args.rounds,
                                                         args.seconds / args.rounds)))
            for name, s in servers.items():
                (count0, total0), cpu0 = start[name]
                (count1, total1), cpu1 = batches(s), s.cpu_seconds()
                r = summarize(slices[name], c)
                r["mean_batch"] = (total1 - total0) / max(count1 - count0, 1)
                r["server_cpu_ms"] = 1000 * (cpu1 - cpu0) / max(r["ok"], 1)
                best[name][c] = r
    finally:
        for s in servers.values():
            s.stop()
        for s in servers.values():
            s.log.unlink(missing_ok=True)
    for per in best.values():
        for r in per.values():
            r["of_ceiling"] = r["rps"] / top
    print(f"model {json.loads((run / 'summary.json').read_text())['model']}, serving {source}, --threads {args.threads}, "
          f"batching with --max-delay-ms {args.max_delay_ms}, {args.rounds} alternating slices per concurrency; "
          "server CPU per request includes its polling of /metrics (not its forward process's)")
    print(f"ceiling: the model's own batch-64 forward passes, {top:.1f} images/s")
    print(f"{'config':<12} {'conc':>4} {'req/s':>8} {'ceiling':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} "
          f"{'cpu ms':>7} {'errors':>6}")
    for name, per in best.items():
        for c, r in per.items():
            print(f"{name:<12} {c:>4} {r['rps']:>8.1f} {100 * r['of_ceiling']:>7.1f}% {r['p50_ms']:>8.1f} "
                  f"{r['p99_ms']:>8.1f} {r['mean_batch']:>6.1f} {r['server_cpu_ms']:>7.2f} {r['errors']:>6}")
    ratios = {}
    if {"batching", "no batching"} <= set(best):
        ratios = {c: best["batching"][c]["rps"] / best["no batching"][c]["rps"] for c in levels}
        for c, ratio in ratios.items():
            print(f"concurrency {c}: batching / no batching = {ratio:.2f}x requests/s")
    if {"batching", "in-process"} <= set(best):
        for c in levels:
            print(f"concurrency {c}: forward process / in-process = "
                  f"{best['batching'][c]['rps'] / best['in-process'][c]['rps']:.2f}x requests/s")
    out = {"run": str(run), "serve": str(source), "args": vars(args), "ceiling_images_per_s": top,
           "results": best, "ratio_rps": ratios}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
