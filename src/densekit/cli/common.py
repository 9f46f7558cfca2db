"""What every verb shares: ``--json`` output, one JSON object per line, so ``jq``, ``grep`` and a
line-by-line reader take any verb's output alike. (``--input-size`` has its one parser in
``models.registry.input_size``.)"""
from __future__ import annotations

import json


# Help shared by the verbs that take the same argument.
DEVICE_HELP = "cpu, cuda, cuda:N or auto: a GPU when torch sees one, else the CPU (default: auto)"
RUN_HELP = "a run folder (its best checkpoint) or a checkpoint file"
IMAGES_HELP = "image files (PNG/JPEG/BMP/GIF/WebP) or folders of them"


def add_json_flag(p, what: str = "the result", when: str = ""):
    """``--json``: "print WHAT as JSON, one object per line[, WHEN]"."""
    p.add_argument("--json", action="store_true",
                   help=f"print {what} as JSON, one object per line" + (f", {when}" if when else ""))


def print_json(*objects: dict):
    """Each object on its own line (JSON Lines)."""
    for obj in objects:
        print(json.dumps(obj, default=str), flush=True)


def add_table_flags(p):
    """The csv: table flags of `densekit train` (--image-col ...), with config.py's help, for the verbs
    that read a dataset outside training (eval, data info/show/import)."""
    import dataclasses

    from ..config import TABLE_FIELDS, TrainConfig
    g = p.add_argument_group("csv: tables (as in densekit train; docs/data.md)")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in TABLE_FIELDS:
        meta = fields[name].metadata
        choices = meta["choices"]
        g.add_argument("--" + name.replace("_", "-"), dest=name, choices=choices,
                       metavar="A,B,C" if name == "label_cols" else None,
                       help=f"{meta['help']} (default: {meta['none']})".replace("%", "%%"))


def table_args(args) -> dict:
    """The table flags given, as load_dataset options (--label-cols split at commas)."""
    from ..config import TABLE_FIELDS
    opts = {k: getattr(args, k, None) for k in TABLE_FIELDS if getattr(args, k, None) is not None}
    if "label_cols" in opts:
        opts["label_cols"] = [v.strip() for v in opts["label_cols"].split(",")]
    return opts


def add_abstention_flags(p):
    """``--reject-below`` and ``--reject-ood``, the same on predict, eval and serve."""
    p.add_argument("--reject-below", type=float, metavar="P",
                   help="answer label null (reason low_confidence) below this calibrated confidence; default: the "
                        "run's --coverage threshold, if any; 0 rejects nothing")
    p.add_argument("--reject-ood", action="store_true",
                   help="answer label null (reason out_of_distribution) above the OOD threshold fitted on "
                        "validation (keeps 95%% of in-distribution images)")
