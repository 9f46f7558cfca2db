"""`densekit predict RUN_OR_CHECKPOINT IMAGE_OR_DIR...`: top-k classes with probabilities.

The model is loaded once (``densekit.load_predictor``: PyTorch for a run or checkpoint, onnxruntime
for an ``.onnx`` file), before the images are looked at, so a bad model is the first thing said.
Folders are expanded, then predicted a chunk at a time, so a folder of any size streams: memory is
bounded by one chunk, results are printed (and written to ``--csv``) as they come, and a terminal
shows the progress."""
from __future__ import annotations

import csv
import sys

from .common import DEVICE_HELP, IMAGES_HELP, add_abstention_flags, add_json_flag, print_json

CHUNK = 1024   # images decoded and predicted at once


def add_parser(sub):
    p = sub.add_parser("predict", help="classify image files (PNG/JPEG/BMP/GIF/WebP, any mode and size)")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder, a checkpoint, or an .onnx file from `densekit export` (no PyTorch needed)")
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR", help=IMAGES_HELP)
    p.add_argument("--info", action="store_true", help="print what the model is (classes, input, precision, "
                   "the int8/bf16 accuracy gate's figures) instead of predicting")
    p.add_argument("--top-k", type=int, default=5, help="classes listed per image, most probable first (default 5)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + "; an .onnx file runs on the CPU")
    p.add_argument("--tta", choices=["none", "flip"],
                   help="test-time augmentation: average the image and its mirror (flip) or not; default: the run's own")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image: file, label, index, prob, top_k, "
                   "error, confidence, ood_score, reason")
    add_abstention_flags(p)
    add_json_flag(p, "one object per image")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import load_predictor
    from ..errors import DensekitError
    from ..decode import expand_images   # torch-free, like the .onnx path
    if args.top_k < 1:
        raise DensekitError(f"--top-k {args.top_k}: give at least 1")
    model = load_predictor(args.checkpoint, device=args.device, tta=args.tta)
    if args.info:
        return _info(model, args.json)
    if not args.images:
        raise DensekitError("give IMAGE_OR_DIR to predict, or --info to describe the model")
    from ..predictions import check_abstention
    check_abstention(model.spec, args.reject_below, args.reject_ood)
    files = expand_images(args.images)
    if not files:
        raise DensekitError(f"no images in {' '.join(args.images)} (looked for {', '.join(_suffixes())})")
    table = _csv(args.csv)
    failed, show = 0, sys.stderr.isatty() and len(files) > CHUNK
    try:
        for start in range(0, len(files), CHUNK):
            results = model.predict(files[start:start + CHUNK], top_k=args.top_k, reject_below=args.reject_below,
                                    reject_ood=args.reject_ood)
            for r in results:
                _print(r, args.json)
                if table:
                    table.writerow(_row(r))
                if "error" in r:
                    failed += 1
                    print(f"densekit: error: {r['error']}", file=sys.stderr)
            if show:
                print(f"\rpredicted {min(start + CHUNK, len(files)):,}/{len(files):,} images", end="",
                      file=sys.stderr, flush=True)
    finally:
        if show:
            print(file=sys.stderr)
        if table:   # kept only when every row is in
            table.close(done=sys.exc_info()[0] is None)
    return 1 if failed else 0


def _print(r: dict, as_json: bool):
    if as_json:
        print_json(r)
    elif "error" not in r and "labels" in r:   # several labels per image: the set, then every score
        scores = ", ".join(f"{k} {100 * v:.1f}%" for k, v in sorted(r["scores"].items(), key=lambda kv: -kv[1]))
        print(f"{r['file']}: {' | '.join(r['labels']) or '(no label)'}  [{scores}]", flush=True)
    elif "error" not in r:
        said = f"rejected ({r['reason']}): " if r.get("reason") else ""
        print(f"{r['file']}: {said}" + ", ".join(f"{g['label']} {100 * g['prob']:.1f}%" for g in r["top_k"]),
              flush=True)


class _Table:
    """--csv rows, written to a temporary file beside the target that replaces it only once every
    row is in: a full disk, an error or Ctrl-C mid-way leaves no partial CSV (``files.replacing``)."""

    def __init__(self, path):
        from ..files import replacing
        self.path, self._replacing = path, replacing(path)
        self.file = open(self._replacing.__enter__(), "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.writerow(["file", "label", "index", "prob", "top_k", "error", "confidence", "ood_score", "reason"])

    def writerow(self, row):
        self._io(lambda: (self.writer.writerow(row), self.file.flush()))

    def _io(self, step):
        try:
            step()
        except OSError as err:
            self.close(done=False, error=err)

    def close(self, done: bool, error: OSError | None = None):
        if self.file.closed:   # already closed by a failed write
            return
        try:
            self.file.close()
        except OSError as err:
            done, error = False, error or err
        if done:
            self._replacing.__exit__(None, None, None)
        else:   # the temporary file is removed; an OSError becomes files' one-line WriteError
            error = error or RuntimeError("interrupted")
            self._replacing.__exit__(type(error), error, None)


def _csv(path):
    return _Table(path) if path else None


def _row(r: dict) -> list:
    if "error" in r:
        return [r["file"], "", "", "", "", r["error"], "", "", ""]
    if "labels" in r:   # label: the set joined by |; top_k: every label's score
        return [r["file"], "|".join(r["labels"]), "", "", ";".join(f"{k}:{v:.6f}" for k, v in r["scores"].items()),
                "", "", "", ""]
    best = r["top_k"][0]
    rejected = r.get("label", best["label"]) is None          # label empty, the reason said
    return [r["file"], "" if rejected else best["label"], best["index"], f"{best['prob']:.6f}",
            ";".join(f"{g['label']}:{g['prob']:.6f}" for g in r["top_k"]), "",
            f"{r['confidence']:.6f}" if "confidence" in r else "",
            f"{r['ood_score']:.6f}" if "ood_score" in r else "", r.get("reason", "")]


def _suffixes():
    from ..decode import EXTENSIONS
    return [e[1:] for e in EXTENSIONS]


def _info(model, as_json: bool) -> int:
    """The model card (``serve``'s ``/v1/model``): one JSON object, or its lines."""
    from ..workflows.verify import describe
    from ..serve.backends import model_card
    card = model_card(model)
    if as_json:
        print_json(card)
        return 0
    for key in ("name", "source", "backend", "precision", "dataset", "classes", "input_size", "tta", "metrics"):
        if card.get(key) is not None:
            print(f"{key}: {card[key]}")
    if card.get("gate"):
        print(f"gate: {describe(card['gate'])}")
    return 0
