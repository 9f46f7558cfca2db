"""A dense block's training pass (forward + backward) on the shared-statistics block route
against the per-layer route, DenseNet-121's four block shapes, passes interleaved in one process.

    PYTHONPATH=src python benchmarks/block_route.py [--batch 32] [--threads 1] [--keep-freed-memory]

bf16 autocast + channels-last. With one thread it times the thread's CPU time, which other
processes barely disturb. ``--keep-freed-memory`` applies densekit's allocator tuning
(``densekit train`` runs with it; a plain PyTorch loop does not). Prints each route's median and
the ratio per-layer / block (above 1: the block route is faster). docs/speed.md explains the
size limit that ``DenseBlock.fused = None`` applies from these figures.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from densekit.allocator import keep_freed_memory
from densekit.models import DenseBlock

# (layers, input channels, map side) of DenseNet-121's blocks at a 64x64 input.
SHAPES = [(6, 64, 16), (12, 128, 8), (24, 256, 4), (16, 512, 2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--keep-freed-memory", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    cl = torch.channels_last
    for layers, channels, side in SHAPES:
        torch.manual_seed(0)
        block = DenseBlock(layers, channels, 32, bn_size=4).to(memory_format=cl).train()
        x = torch.randn(args.batch, channels, side, side).to(torch.bfloat16).contiguous(memory_format=cl)
        x.requires_grad_()
        grad = torch.randn(args.batch, block.out_channels, side, side).to(torch.bfloat16).contiguous(memory_format=cl)
        times = {True: [], False: []}
        for i in range(args.passes + 2):
            for fused in times:
                block.fused = fused
                t = clock()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = block(x)
                out.backward(grad)
                if i >= 2:  # two warm-up passes each
                    times[fused].append(clock() - t)
        block_ms, layer_ms = (1e3 * statistics.median(times[k]) for k in (True, False))
        print(f"{layers:2d} layers, {channels:3d} channels in, {side:2d}x{side:<2d} "
              f"({args.batch * side * side:5d} values per channel): block route {block_ms:6.1f} ms, "
              f"per-layer route {layer_ms:6.1f} ms, ratio {layer_ms / block_ms:.2f}x")


if __name__ == "__main__":
    main()
