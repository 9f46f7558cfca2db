"""What every verb shares: ``--json`` output (one JSON object per line, so ``jq``, ``grep`` and a
line-by-line reader take any verb's output alike) and the one parser of ``--input-size``."""
from __future__ import annotations

import json

from ..errors import DensekitError


def add_json_flag(p, what: str = "the result"):
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON, one object per line")


def print_json(*objects: dict):
    """Each object on its own line (JSON Lines)."""
    for obj in objects:
        print(json.dumps(obj, default=str), flush=True)


def parse_input_size(text: str, default_channels: int = 3) -> tuple[int, int, int]:
    """``--input-size``: ``C,H,W`` (``CxHxW`` too), or one side ``N`` for a square image with the
    model's own number of channels ``default_channels``."""
    try:
        parts = [int(p) for p in str(text).replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1 and parts[0] > 0:
        return (default_channels, parts[0], parts[0])
    if len(parts) == 3 and min(parts) > 0:
        return tuple(parts)
    raise DensekitError(f"--input-size {text!r} is not C,H,W or one side N; write e.g. --input-size 3,32,32 "
                        "or --input-size 32")


def add_input_size(p):
    p.add_argument("--input-size", metavar="C,H,W|N",
                   help="one input image: C,H,W, or one side N for a square image with the model's channels "
                        "(default: the model's own input size)")
