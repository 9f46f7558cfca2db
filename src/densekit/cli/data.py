"""`densekit data list|info|show|import`: what a dataset holds, a picture of it, and a fast copy of it."""
from __future__ import annotations

import sys


from .common import add_json_flag, add_table_flags, print_json, table_args


def _source_args(p, out_required=False):
    p.add_argument("source", help="a name from `densekit data list`, folder:PATH, tfrecord:PATTERN, "
                   "synthetic:n=1000,..., packed:DIR or a folder path")
    p.add_argument("--data-dir", help="where the built-in sets' files are (their usual extracted layout)")
    p.add_argument("--image-size", type=int, help="resize every image to this square size")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert every image to 1 or 3 channels")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")
    add_table_flags(p)


def add_parser(sub):
    p = sub.add_parser("data", help="list, inspect, picture and import datasets")
    verbs = p.add_subparsers(dest="data_command", metavar="VERB", required=True)

    v = verbs.add_parser("list", help="the dataset sources densekit reads")
    add_json_flag(v, "each source (name, description)")
    v.set_defaults(func=run_list)

    v = verbs.add_parser("info", help="classes, image shape and counts per class per split")
    _source_args(v)
    add_json_flag(v, '{"classes": [...], "splits": {...}}')
    v.set_defaults(func=run_info)

    v = verbs.add_parser("show", help="a grid of random samples per class, with class names, as an image")
    _source_args(v)
    v.add_argument("--split", default="train", choices=("train", "val", "test"),
                   help="the split to draw from (default train)")
    v.add_argument("--per-class", type=int, default=7, help="samples per class, drawn in its row (default 7)")
    v.add_argument("--max-classes", type=int, default=20, help="rows to draw: the first N classes (default 20)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random choice of samples (default 0)")
    v.add_argument("--out", required=True, help="the image file to write, e.g. grid.png")
    add_json_flag(v, "what was written")
    v.set_defaults(func=run_show)

    v = verbs.add_parser("import", help="decode a source once into densekit's packed format (read as packed:DIR)")
    _source_args(v)
    v.add_argument("--out", required=True, help="folder to write")
    v.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    v.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    add_json_flag(v, "what was written")
    v.set_defaults(func=run_import)

    v = verbs.add_parser("shapes", help="generate a multi-label set: PNGs of drawn shapes and two CSV layouts")
    v.add_argument("out", help="folder to write (images/, labels.csv, labels-wide.csv)")
    v.add_argument("--n", type=int, default=2000, help="training images; val and test get n/4 each (default 2000)")
    v.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    v.add_argument("--seed", type=int, default=0, help="seed of the drawn shapes (default 0)")
    v.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    add_json_flag(v, "what was written")
    v.set_defaults(func=run_shapes)


TABLE_CLASSES = 50   # beyond this, `data info` summarises the counts instead of listing every class


def _spread(counts: list[int], classes: list[str], shown: int = 5) -> str:
    """Per-class counts in one line: min / median / max, the rarest and the commonest classes."""
    order = sorted(range(len(counts)), key=lambda k: (counts[k], classes[k]))
    median = sorted(counts)[len(counts) // 2]
    pick = lambda ks: ", ".join(f"{classes[k]} {counts[k]:,}" for k in ks)  # noqa: E731
    return (f"per class min {counts[order[0]]:,} / median {median:,} / max {counts[order[-1]]:,}; "
            f"rarest {pick(order[:shown])}; commonest {pick(order[::-1][:shown])}")


def _options(args):
    from ..data.table_dataset import table_options
    return {"image_size": args.image_size, "channels": args.channels, "skip_bad": args.skip_bad,
            **table_options(table_args(args), args.source)}


def run_list(args):
    from .. import data as D
    sources = D.list_sources()
    if args.json:
        print_json(*({"name": name, "description": desc} for name, desc in sources.items()))
        return 0
    width = max(map(len, sources))
    for name, desc in sources.items():
        print(f"{name:<{width}}  {desc}")
    return 0


def run_info(args):
    import torch
    from ..data.sources import download_plan, load_splits
    plan = download_plan(args.source, args.data_dir)
    if plan:   # info never downloads: it says what `data import` or `train` would fetch
        return _print_plan(args, plan)
    splits = load_splits(args.source, args.data_dir, **_options(args))
    first = next(iter(splits.values()))
    if first.task == "multilabel":
        return _multilabel_info(args, splits)
    channels, height, width = first.shape
    info = {"source": args.source, "classes": list(first.classes), "channels": channels, "size": [height, width],
            "splits": {name: {"count": len(ds),
                              "per_class": torch.bincount(ds.labels, minlength=len(ds.classes)).tolist()}
                       for name, ds in splits.items()}}
    from ..data.balance import imbalance_note
    counted = info["splits"].get("train") or next(iter(info["splits"].values()))
    note = imbalance_note(counted["per_class"], info["classes"])
    if note:
        info["warnings"] = [note]
        print(f"densekit: {note}", file=sys.stderr)
    if args.json:
        print_json(info)
        return 0
    print(f"{args.source}: {len(info['classes'])} classes, {channels} x {height} x {width}, "
          + ", ".join(f"{name} {s['count']:,}" for name, s in info["splits"].items()))
    if len(info["classes"]) > TABLE_CLASSES:   # thousands of rows help nobody: the spread and the extremes
        for name, s in info["splits"].items():
            print(f"  {name}: {_spread(s['per_class'], info['classes'])}")
        return 0
    width = max([5] + [len(c) for c in info["classes"]])
    print(f"  {'class':<{width}}  " + "  ".join(f"{name:>8}" for name in info["splits"]))
    for k, cls in enumerate(info["classes"]):
        print(f"  {cls:<{width}}  " + "  ".join(f"{s['per_class'][k]:>8,}" for s in info["splits"].values()))
    return 0


def _multilabel_info(args, splits):
    """Images per label per split, unknown entries, labels per image, and co-occurrence in the
    first split (train): every label in --json, the TOP most frequent on screen."""
    from ..data.cooccurrence import TOP, cooccurrence, label_counts
    first = next(iter(splits.values()))
    channels, height, width = first.shape
    info = {"source": args.source, "task": "multilabel", "classes": list(first.classes), "channels": channels,
            "size": [height, width], "splits": {name: label_counts(ds) for name, ds in splits.items()},
            "cooccurrence": cooccurrence(first)}
    if args.json:
        print_json(info)
        return 0
    stats = info["splits"]
    print(f"{args.source}: {len(info['classes'])} labels (multi-label), {channels} x {height} x {width}, "
          + ", ".join(f"{name} {s['count']:,}" for name, s in stats.items()))
    shown = info["cooccurrence"]["labels"]
    width = max([10] + [len(c) for c in shown])
    print(f"  {'label':<{width}}  " + "  ".join(f"{name:>8}" for name in stats)
          + ("   unknown" if any(any(s["unknown"]) for s in stats.values()) else ""))
    for name in shown:
        k = info["classes"].index(name)
        unknown = sum(s["unknown"][k] for s in stats.values())
        print(f"  {name:<{width}}  " + "  ".join(f"{s['per_label'][k]:>8,}" for s in stats.values())
              + (f"  {unknown:>8,}" if unknown else ""))
    if len(info["classes"]) > TOP:
        print(f"  ... and {len(info['classes']) - TOP:,} rarer labels (--json lists every one)")
    print(f"  {'no label':<{width}}  " + "  ".join(f"{s['no_label']:>8,}" for s in stats.values()))
    print(f"  {'per image':<{width}}  " + "  ".join(f"{s['labels_per_image']:>8.2f}" for s in stats.values()))
    pairs = info["cooccurrence"]["pairs"][:10]
    if pairs:
        print(f"  together most often ({next(iter(splits))}): " + ", ".join(
            f"{a}+{b} {p['count']:,} ({100 * p['share']:.0f}% of {a})" for p in pairs for a, b in [p["labels"]]))


def _print_plan(args, plan: list[dict]) -> int:
    import os
    from urllib.parse import urlsplit
    total = sum(p["bytes"] for p in plan)
    if args.json:
        print_json({"source": args.source, "on_disk": False, "download": plan, "bytes": total})
        return 0
    files = plan[0]["file"] if len(plan) == 1 else f"{len(plan)} files"
    off = " (downloads are off: DENSEKIT_OFFLINE=1)" if os.environ.get("DENSEKIT_OFFLINE") == "1" else ""
    print(f"{args.source} is not on disk: `densekit data import {args.source}` or training on it downloads {files} "
          f"({total / 1e6:,.1f} MB) from {urlsplit(plan[0]['url']).netloc} into {plan[0]['into']}, "
          f"MD5-checked{off}; or point --data-dir at a folder that has it")
    return 0


def run_show(args):
    from .. import data as D
    from ..data.grid import sample_grid
    import io
    from pathlib import Path
    from ..files import atomic_write, check_target
    kinds = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    check_target(args.out, tuple(kinds))     # before loading the data
    ds = D.load_dataset(args.source, args.split, args.data_dir, **_options(args))
    buf = io.BytesIO()
    sample_grid(ds, args.per_class, args.max_classes, args.seed).save(buf, kinds[Path(args.out).suffix.lower()])
    atomic_write(args.out, buf.getvalue(), durable=False)
    if args.json:
        print_json({"out": args.out, "source": args.source, "split": args.split})
    else:
        print(f"wrote {args.out}")
    return 0


def run_import(args):
    from ..data.packed import check_out, write_packed
    from ..data.sources import load_splits
    check_out(args.out, args.overwrite)    # before the decoding, which may take long
    splits = load_splits(args.source, args.data_dir, **_options(args))

    def progress(split, done, total):
        if sys.stderr.isatty():
            print(f"\r{split}: {done:,}/{total:,}", end="" if done < total else "\n", file=sys.stderr)

    meta = write_packed(splits, args.out, args.source, workers=args.workers, progress=progress,
                        overwrite=args.overwrite)
    if args.json:
        print_json({"out": args.out, **meta})
        return 0
    counts = ", ".join(f"{k} {v['count']:,}" for k, v in meta["splits"].items())
    print(f"wrote {args.out} ({counts}); train on it with --dataset packed:{args.out}")
    return 0


def run_shapes(args):
    from ..data.shapes import write_shapes
    info = write_shapes(args.out, n=args.n, size=args.size, seed=args.seed, overwrite=args.overwrite)
    if args.json:
        print_json(info)
        return 0
    counts = ", ".join(f"{k} {v:,}" for k, v in info["splits"].items())
    print(f"wrote {info['out']} ({counts}; labels {', '.join(info['labels'])}); train on it with "
          f"--dataset csv:{info['tables'][0]} --label-sep '|' --none-label none --split-col split")
    return 0
