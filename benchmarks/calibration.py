"""Calibration, selective accuracy and OOD detection figures for docs/calibration.md.

    python benchmarks/calibration.py digits --out /tmp/cal          # digits, and digits 0-4 against 5-9
    python benchmarks/calibration.py run runs/NAME --ood mnist      # any trained run (e.g. Fashion-MNIST)

``digits`` trains a small DenseNet-BC on scikit-learn's 8x8 digits (calibrated at the end of training
on its 200-image validation split) and reports ECE before/after and accuracy at 80/90/95% coverage
on the 360 test images; then trains the same net on digits 0-4 only (written out as PNG folders)
and reports AUROC / FPR at 95% TPR of the OOD score on test digits 0-4 against test digits 5-9
(both the energy and the max-logit score). One JSON line per result.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import densekit

SMALL = {"block_config": [6, 6], "growth_rate": 12}


def train(out: Path, name: str, dataset: str, epochs: int) -> Path:
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=SMALL, dataset=dataset, epochs=epochs,
                               batch_size=32, lr=0.1, val_split=200, out=str(out), name=name, workers=0,
                               tensorboard=False, plots=False)
    return densekit.train(cfg, verbose=False).dir


def report(label: str, m: dict) -> dict:
    c, s = m["calibration"], m["selective"]
    row = {"what": label, "count": m["count"], "top1": m["top1"], "temperature": c["temperature"],
           "ece_before": c["ece_before"], "ece_after": c["ece_after"], "mce_before": c["mce_before"],
           "mce_after": c["mce_after"], "nll_before": c["nll_before"], "nll_after": c["nll_after"],
           "brier_before": c["brier_before"], "brier_after": c["brier_after"],
           **{k: s[k] for k in ("accuracy_at_80", "accuracy_at_90", "accuracy_at_95", "aurc")}}
    if "ood" in m:
        o = m["ood"]
        row.update(ood=o["dataset"], ood_auroc=o["auroc"], ood_fpr_at_95_tpr=o["fpr_at_95_tpr"],
                   max_logit_auroc=o["max_logit"]["auroc"], max_logit_fpr_at_95_tpr=o["max_logit"]["fpr_at_95_tpr"],
                   ood_rejected_at_threshold=o.get("out_rejected"), in_rejected_at_threshold=o.get("in_rejected"))
    print(json.dumps(row), flush=True)
    return row


def write_digits(root: Path, classes: range) -> str:
    """digits of ``classes`` as folder:ROOT (train/ and test/, a sub-folder per class)."""
    from PIL import Image
    for split in ("train", "test"):
        ds = densekit.load_dataset("digits", split)
        for i in range(len(ds)):
            image, label = ds[i]
            if int(label) in classes:
                path = root / split / str(int(label)) / f"{i:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image[0].numpy(), "L").save(path)
    return f"folder:{root}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("digits")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--epochs", type=int, default=15)
    r = sub.add_parser("run")
    r.add_argument("run")
    r.add_argument("--ood")
    args = p.parse_args(argv)
    if args.what == "run":
        report(args.run, densekit.evaluate(args.run, ood=args.ood))
        return 0
    report("digits", densekit.evaluate(train(args.out, "digits", "digits", args.epochs), ood="synthetic:n=1800,size=8,channels=1"))
    low = write_digits(args.out / "data" / "digits0-4", range(0, 5))
    high = write_digits(args.out / "data" / "digits5-9", range(5, 10))
    report("digits 0-4 vs 5-9", densekit.evaluate(train(args.out, "digits04", low, args.epochs), ood=high))
    return 0


if __name__ == "__main__":
    sys.exit(main())
