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
