"""`densekit data list|info|show|import`: what a dataset holds, a picture of it, and a fast copy of it."""
from __future__ import annotations

import sys

import torch

from .. import data as D
from .common import add_json_flag, print_json


def _source_args(p, out_required=False):
    p.add_argument("source", help="a name from `densekit data list`, folder:PATH, tfrecord:PATTERN, "
                   "synthetic:n=1000,..., packed:DIR or a folder path")
    p.add_argument("--data-dir", help="where the built-in sets' files are (their usual extracted layout)")
    p.add_argument("--image-size", type=int, help="resize every image to this square size")
    p.add_argument("--channels", type=int, choices=(1, 3), help="convert every image to 1 or 3 channels")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")


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
    v.add_argument("--split", default="train")
    v.add_argument("--per-class", type=int, default=7)
    v.add_argument("--max-classes", type=int, default=20, help="rows to draw (the first N classes)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", required=True, help="the image file to write, e.g. grid.png")
    add_json_flag(v, "what was written")
    v.set_defaults(func=run_show)

    v = verbs.add_parser("import", help="decode a source once into densekit's packed format (read as packed:DIR)")
    _source_args(v)
    v.add_argument("--out", required=True, help="folder to write")
    v.add_argument("--workers", type=int, default=2, help="decoding processes")
    v.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    add_json_flag(v, "what was written")
    v.set_defaults(func=run_import)


def _options(args):
    return {"image_size": args.image_size, "channels": args.channels, "skip_bad": args.skip_bad}


def run_list(args):
    sources = D.list_sources()
    if args.json:
        print_json(*({"name": name, "description": desc} for name, desc in sources.items()))
        return 0
    width = max(map(len, sources))
    for name, desc in sources.items():
        print(f"{name:<{width}}  {desc}")
    return 0


def run_info(args):
    from ..data.sources import load_splits
    splits = load_splits(args.source, args.data_dir, **_options(args))
    first = next(iter(splits.values()))
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
    width = max([5] + [len(c) for c in info["classes"]])
    print(f"  {'class':<{width}}  " + "  ".join(f"{name:>8}" for name in info["splits"]))
    for k, cls in enumerate(info["classes"]):
        print(f"  {cls:<{width}}  " + "  ".join(f"{s['per_class'][k]:>8,}" for s in info["splits"].values()))
    return 0


def run_show(args):
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
