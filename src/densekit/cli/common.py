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


def add_abstention_flags(p):
    """``--reject-below`` and ``--reject-ood``, the same on predict, eval and serve."""
    p.add_argument("--reject-below", type=float, metavar="P",
                   help="answer label null (reason low_confidence) below this calibrated confidence; default: the "
                        "run's --coverage threshold, if any; 0 rejects nothing")
    p.add_argument("--reject-ood", action="store_true",
                   help="answer label null (reason out_of_distribution) above the OOD threshold fitted on "
                        "validation (keeps 95%% of in-distribution images)")
