"""Peak training memory with and without memory-efficient mode (Pleiss et al., arXiv 1707.06990).

One training step (forward + backward, float32, batch 64, 32x32 input) per configuration; on CUDA
the peak is ``torch.cuda.max_memory_allocated`` and "activations" is that peak minus what the
weights and gradients hold. Prints one JSON line per configuration.

    python benchmarks/memory_efficient.py [--device cuda] [--batch 64]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from densekit.models import create_model


def step_memory(model, x, y, device):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()      # warm-up: allocates .grad
    torch.cuda.synchronize(device)
    held = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device)
    return peak / 2**20, (peak - held) / 2**20, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = False
    configs = [("densenet-bc-190-k40", {})] + [
        (f"densenet-bc-{6 * n + 4}-k12", {"block_config": (n,) * 3}) for n in (6, 16, 26, 36, 46)]
    for name, overrides in configs:
        base = name if not overrides else "densenet-bc-100-k12"
        for efficient in (False, True):
            torch.manual_seed(0)
            model = create_model(base, memory_efficient=efficient, **overrides).to(device).train()
            x = torch.randn(args.batch, 3, 32, 32, device=device)
            y = torch.randint(0, 10, (args.batch,), device=device)
            try:
                peak, activations, seconds = step_memory(model, x, y, device)
            except Exception as err:  # report and go on: one broken configuration must not hide the rest
                print(json.dumps({"model": name, "memory_efficient": efficient,
                                  "error": str(err).splitlines()[0]}), flush=True)
                continue
            print(json.dumps({"model": name, "batch": args.batch, "memory_efficient": efficient,
                              "params": sum(p.numel() for p in model.parameters()),
                              "peak_mb": round(peak, 1), "activations_mb": round(activations, 1),
                              "step_s": round(seconds, 4), "device": torch.cuda.get_device_name(device)}),
                  flush=True)
            del model, x, y
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
