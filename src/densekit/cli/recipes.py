"""`densekit recipes`: the named training recipes shipped with densekit, and what each holds."""
from __future__ import annotations

from ..config import RECIPES_DIR, list_recipes, load_recipe
from .common import add_json_flag, print_json


def describe(name: str) -> str:
    """A recipe's first comment line: where its settings come from."""
    for line in (RECIPES_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def add_parser(sub):
    p = sub.add_parser("recipes", help="list the named recipes (`densekit train --recipe NAME`)")
    p.add_argument("name", nargs="?", help="show this recipe's fields and notes")
    add_json_flag(p, "each recipe (name, description, fields)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.json:
        names = [args.name] if args.name else list_recipes()
        # load_recipe: an unknown name fails with the list of valid ones
        print_json(*({"name": n, "description": describe(n), "fields": load_recipe(n)} for n in names))
        return 0
    if args.name:
        load_recipe(args.name)     # an unknown name fails with the list of valid ones
        print((RECIPES_DIR / f"{args.name}.yaml").read_text(), end="")
        return 0
    names = list_recipes()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe(name)}")
    return 0
