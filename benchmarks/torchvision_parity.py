"""Check that torchvision's own models' state_dicts load into densekit and give the same outputs.

Needs torchvision, which densekit itself never imports (run it where torchvision is installed).
Random weights with randomised BatchNorm statistics; prints one JSON line per model.

    python benchmarks/torchvision_parity.py [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch
import torchvision

from densekit.models import create_model

PAIRS = [("densenet121", "densenet121"), ("densenet169", "densenet169"), ("densenet201", "densenet201"),
         ("densenet161", "densenet161"), ("resnet18", "resnet18"), ("resnet50", "resnet50"),
         ("vgg11_bn", "vgg11-bn"), ("vgg16_bn", "vgg16-bn"), ("googlenet", "googlenet-tv")]
# torchvision's GoogLeNet files hold the auxiliary classifiers: both sides build them (eval ignores them).
ARGS = {"googlenet": ({"aux_logits": True, "init_weights": True}, {"aux_logits": True})}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        for tv_name, dk_name in PAIRS:
            tv_args, dk_args = ARGS.get(tv_name, ({}, {}))
            tv = getattr(torchvision.models, tv_name)(weights=None, **tv_args).eval()
            with torch.no_grad():
                for m in tv.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
            state = tv.state_dict()
            if tv_name.startswith("densenet"):   # the pre-0.4 names of torchvision's hub files
                state = {re.sub(r"(denselayer\d+\.)(norm|relu|conv)([12])\.", r"\1\2.\3.", k): v
                         for k, v in state.items()}
            path = Path(tmp) / f"{tv_name}.pth"
            torch.save(state, path)
            dk = create_model(dk_name, weights=path, **dk_args).eval().to(args.device)
            tv = tv.to(args.device)
            with torch.no_grad():
                a, b = tv(x), dk(x)
            print(json.dumps({"torchvision": tv_name, "densekit": dk_name, "legacy_keys": tv_name.startswith("densenet"),
                              "max_abs_diff": float((a - b).abs().max()), "max_abs_logit": float(a.abs().max()),
                              "same_top1": bool((a.argmax(1) == b.argmax(1)).all()),
                              "torchvision_version": torchvision.__version__}), flush=True)


if __name__ == "__main__":
    main()
