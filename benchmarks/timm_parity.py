"""Check that timm's Inception-ResNet-v2 state_dict (the layout of its published weights, converted
from TF-slim's checkpoint) loads into densekit's ``inception-resnet-v2`` and gives the same outputs.

Needs timm, which densekit itself never imports. Random weights with randomised BatchNorm
statistics; prints one JSON line.

    python benchmarks/timm_parity.py [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import timm
import torch

from densekit.models import create_model

PAIRS = [("inception_resnet_v2", "inception-resnet-v2", 299)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for timm_name, dk_name, size in PAIRS:
            peer = timm.create_model(timm_name).eval()
            with torch.no_grad():
                for m in peer.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
            path = Path(tmp) / f"{timm_name}.pth"
            torch.save(peer.state_dict(), path)
            dk = create_model(dk_name, weights=path).eval().to(args.device)
            x = torch.randn(2, 3, size, size, device=args.device)
            with torch.no_grad():
                a, b = peer.to(args.device)(x), dk(x)
            print(json.dumps({"timm": timm_name, "densekit": dk_name, "max_abs_diff": float((a - b).abs().max()),
                              "max_abs_logit": float(a.abs().max()), "same_top1": bool((a.argmax(1) == b.argmax(1)).all()),
                              "params": sum(p.numel() for p in dk.parameters()), "timm_version": timm.__version__}),
                  flush=True)


if __name__ == "__main__":
    main()
