"""What every verb shares: ``--json`` output, one JSON object per line, so ``jq``, ``grep`` and a
line-by-line reader take any verb's output alike. (``--input-size`` has its one parser in
``models.registry.input_size``.)"""
from __future__ import annotations

import json


def add_json_flag(p, what: str = "the result"):
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON, one object per line")


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
