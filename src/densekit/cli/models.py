"""`densekit models [PATTERN]`: the registry, with parameter counts."""
from __future__ import annotations

from .common import add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("models", help="list the named models and their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'densenet-bc*'")
    add_json_flag(p, "each model")
    p.set_defaults(func=run)


def run(args):
    import torch   # here, not at the top: building the command line must not import PyTorch

    from .. import models as M
    rows = []
    for name in M.list_models(args.pattern):
        entry = M.get_entry(name)
        with torch.device("meta"):   # counting needs shapes only: no memory, no init time
            model = M.create_model(name)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"name": name, "params": params, "source": entry.meta.get("source", ""),
                     "paper": entry.meta.get("paper", "")} | ({"measured": entry.meta["measured"]}
                                                             if "measured" in entry.meta else {}))
    if args.json:
        print_json(*rows)
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    print(f"{'model':<{width}}  {'params':>12}  source")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>12,}  {r['source']}" + (f" ({r['paper']})" if r["paper"] else ""))
    return 0
