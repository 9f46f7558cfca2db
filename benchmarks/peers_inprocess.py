"""densekit vs torchvision vs timm DenseNet-121 training steps, alternated step by step in one process.

On a CPU shared with other work, whole-process timings swing by 2-10x; this measures each
implementation's steps interleaved, so all of them see the same load, and with ``--threads 1``
it times CPU time of the stepping thread (``time.thread_time``), which other processes barely
disturb. Run with the peer venv of benchmarks/peers.sh and densekit on the path:

    PYTHONPATH=src /tmp/peer-venv/bin/python benchmarks/peers_inprocess.py --threads 1 --steps 8

``--impls`` may also name ``densekit-perlayer``: densekit with every dense block on the per-layer
route (no shared-statistics block node).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

import torch


def build(impl: str):
    # torchvision's compiled ops need CUDA here; only its pure-Python model code is used.
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    if impl == "torchvision":
        from torchvision.models import densenet121
        return densenet121(num_classes=10)
    if impl == "timm":
        import timm
        return timm.create_model("densenet121", num_classes=10)
    import densekit
    model = densekit.create_model("densenet121", num_classes=10)
    if impl == "densekit-perlayer":  # every dense block on the per-layer route (docs/speed.md)
        for block in model.modules():
            if isinstance(block, densekit.models.DenseBlock):
                block.fused = False
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", default="torchvision,timm,densekit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    steps = {}
    for impl in args.impls.split(","):
        torch.manual_seed(0)
        model = build(impl).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(model=model, opt=opt):  # the referee's step: bf16 autocast, channels-last, SGD
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        steps[impl] = step
    times = {impl: [] for impl in steps}
    for i in range(args.steps + 2):
        for impl, step in steps.items():
            t = clock()
            step()
            if i >= 2:  # two warm-up steps each
                times[impl].append(clock() - t)
    base = statistics.median(times["densekit"])
    kind = "thread CPU time, 1 thread" if args.threads == 1 else f"wall time, {args.threads} threads"
    print(f"DenseNet-121 {args.size}x{args.size} batch {args.batch}, bf16+channels-last, {kind}, "
          f"{args.steps} alternated steps each")
    for impl, ts in times.items():
        med = statistics.median(ts)
        print(f"{impl:12} median {1e3 * med:7.1f} ms/step  {args.batch / med:6.1f} img/s  "
              f"densekit speedup {med / base:4.2f}x")


if __name__ == "__main__":
    main()
