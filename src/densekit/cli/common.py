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
