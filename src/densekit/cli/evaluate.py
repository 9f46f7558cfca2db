"""`densekit eval RUN_OR_CHECKPOINT`: top-1, top-5, loss; per-class accuracy (= recall), precision, F1 on a split."""
from __future__ import annotations

from .common import DEVICE_HELP, RUN_HELP, add_abstention_flags, add_json_flag, add_table_flags, print_json, table_args


def add_parser(sub):
    p = sub.add_parser("eval", help="evaluate a run or checkpoint on a dataset split")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help=RUN_HELP)
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="the split to score (default test); val of a source without one is the part of train "
                        "the run validated on")
    p.add_argument("--data-dir", help="where the built-in sets' files are (default: $DENSEKIT_DATA, "
                   "else ~/.cache/densekit)")
    p.add_argument("--batch-size", type=int, default=512, help="images per forward pass (default 512)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--tta", choices=["none", "flip"],
                   help="test-time augmentation: average the image and its mirror (flip) or not; default: the run's own (none on --split val, as training validated)")
    add_table_flags(p)
    add_abstention_flags(p)
    p.add_argument("--ood", metavar="DATASET", help="images of none of the classes (e.g. mnist for a Fashion-MNIST "
                   "model): AUROC and FPR at 95%% TPR of the out-of-distribution score")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine import evaluate
    from ..engine.evaluate import top5_name, tta_note
    from ..engine.progress import ProgressBar
    bar = None

    def progress(done, total):     # a live bar on a terminal only, never in --json output
        nonlocal bar
        bar = bar or ProgressBar(total, f"eval {args.split}", enabled=not args.json)
        bar.update(done)

    try:
        m = evaluate(args.checkpoint, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
                     batch_size=args.batch_size, device=args.device, tta=args.tta, progress=progress,
                     table=table_args(args), reject_below=args.reject_below, reject_ood=args.reject_ood,
                     ood=args.ood)
    finally:
        if bar is not None:
            bar.close()
    from ..engine.distributed import shutdown, world
    shutdown()
    if world()[0] != 0:   # under torchrun every rank evaluates its share; rank 0 reports
        return 0
    if args.json:
        print_json({k: v for k, v in m.items() if k != "confusion"})
        return 0
    if "map" in m:
        return _print_multilabel(m)
    print(f"{m['dataset']} {m['split']}: top-1 {100 * m['top1']:.2f}%{tta_note(m)}  {top5_name(len(m['per_class']))} {100 * m['top5']:.2f}%  "
          f"loss {m['loss']:.4f}  ({m['count']:,} images, {m['checkpoint']})")
    width = max([5] + [len(c) for c in m["per_class"]])
    print(f"  {'class':<{width}}  {'accuracy':>8}  {'precision':>9}  {'recall':>7}  {'F1':>6}  {'support':>7}")
    for name, acc in m["per_class"].items():
        c = m["class_metrics"]["per_class"][name]
        print(f"  {name:<{width}}  {100 * acc:7.2f}%  {100 * c['precision']:8.2f}%  {100 * c['recall']:6.2f}%  "
              f"{100 * c['f1']:5.2f}%  {c['support']:>7,}")
    macro = m["class_metrics"]["macro"]
    print(f"  {'macro':<{width}}  {'':>8}  {100 * macro['precision']:8.2f}%  {100 * macro['recall']:6.2f}%  "
          f"{100 * macro['f1']:5.2f}%")
    for line in abstention_lines(m):
        print(line)
    return 0


def abstention_lines(m: dict) -> list[str]:
    """Calibration, selective accuracy and OOD detection, a line each (engine/calibration.py)."""
    c, s = m["calibration"], m["selective"]
    fit = f"temperature {c['temperature']:.3f}" if c["fitted"] else "not calibrated (densekit calibrate RUN)"
    lines = [f"calibration: {fit}; ECE {100 * c['ece_before']:.2f}% -> {100 * c['ece_after']:.2f}%, MCE "
             f"{100 * c['mce_before']:.2f}% -> {100 * c['mce_after']:.2f}%, NLL {c['nll_before']:.4f} -> "
             f"{c['nll_after']:.4f}, Brier {c['brier_before']:.4f} -> {c['brier_after']:.4f}",
             f"selective: accuracy at 95% coverage {100 * s['accuracy_at_95']:.2f}%, at 90% "
             f"{100 * s['accuracy_at_90']:.2f}%, at 80% {100 * s['accuracy_at_80']:.2f}%; AURC {s['aurc']:.4f}"]
    if "coverage" in s:
        lines[-1] += f"; rejecting: coverage {100 * s['coverage']:.2f}%, accuracy on the accepted " \
                     f"{100 * s['accepted_accuracy']:.2f}%"
    if "ood" in m:
        o = m["ood"]
        lines.append(f"ood vs {o['dataset']}: {o['score']} AUROC {o['auroc']:.4f}, FPR at 95% TPR "
                     f"{100 * o['fpr_at_95_tpr']:.2f}% ({o['in_count']:,} vs {o['out_count']:,} images)")
    return lines


def _print_multilabel(m: dict) -> int:
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"   # noqa: E731
    print(f"{m['dataset']} {m['split']}: mAP {pct(m['map'])}  AUROC {pct(m['auroc'])}  exact match "
          f"{pct(m['exact_match'])}  micro F1 {pct(m['micro_f1'])}  macro F1 {pct(m['macro_f1'])}  Hamming loss "
          f"{m['hamming_loss']:.4f}  loss {m['loss']:.4f}  ({m['count']:,} images, {m['checkpoint']})")
    width = max([5] + [len(c) for c in m["per_label"]])
    print(f"  {'label':<{width}}  {'AUROC':>7}  {'AP':>7}  {'precision':>9}  {'recall':>7}  {'F1':>7}  {'threshold':>9}  "
          f"{'positives':>9}")
    for name, c in m["per_label"].items():
        print(f"  {name:<{width}}  {pct(c['auroc']):>7}  {pct(c['ap']):>7}  {pct(c['precision']):>9}  "
              f"{pct(c['recall']):>7}  {pct(c['f1']):>7}  {c['threshold']:>9.3f}  {c['positives']:>9,}")
    return 0
