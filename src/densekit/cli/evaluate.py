"""`densekit eval RUN_OR_CHECKPOINT`: top-1, top-5, loss; per-class accuracy (= recall), precision, F1 on a split."""
from __future__ import annotations

from .common import add_json_flag, add_table_flags, print_json, table_args


def add_parser(sub):
    p = sub.add_parser("eval", help="evaluate a run or checkpoint on a dataset split")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    p.add_argument("--split", default="test",
                   help="train, val or test; val of a source without one is the split training carved out")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", choices=["none", "flip"],
                   help="test-time augmentation: average the image and its mirror (flip) or not; default: the run's own (none on --split val, as training validated)")
    add_table_flags(p)
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
                     table=table_args(args))
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
    return 0


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
