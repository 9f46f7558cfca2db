"""`densekit train`: every TrainConfig field is a flag (``--batch-size``, ``--no-tensorboard``...).

Precedence, lowest first: defaults, ``--recipe NAME``, ``--config FILE.yaml``, flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ..config import TrainConfig, load_recipe, load_yaml, parse_duration
from ..errors import DensekitError
from .common import add_json_flag, print_json

_HELP = {"model": "registered model name (see `densekit models`)", "dataset": "data source (see `densekit data list`)",
         "time_budget": "wall-clock budget such as 5m or 1h; plans the LR schedule and stops on time",
         "model_args": "model constructor override KEY=VALUE (repeatable), e.g. --model-arg growth_rate=24",
         "tta": "test-time augmentation of the final test (and the run's eval/predict): none, flip, "
                "or auto (flip when the augmentation flips images)",
         "val_split": "items carved from train for validation: a count, or a fraction below 1; 0 for none"}


def _value(text: str):
    """A YAML scalar: 3 -> int, 0.1 -> float, true -> bool, [6,12] -> list, none -> None, else the string."""
    import yaml
    if text.strip().lower() in ("none", "null", "~"):
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def add_config_flags(p: argparse.ArgumentParser):
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = _HELP.get(f.name, f"default {default!r}")
        if f.name == "model_args":
            p.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE", help=help_text)
        elif f.name == "time_budget":
            p.add_argument(flag, dest=f.name, metavar="DURATION", help=help_text)
        elif kind is bool or kind == (bool | None):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "milestones":
            p.add_argument(flag, dest=f.name, metavar="P1,P2", help="multistep: fractions of training, e.g. 0.5,0.75")
        else:
            p.add_argument(flag, dest=f.name, type=_value, metavar=f.name.upper(), help=help_text)


def add_parser(sub):
    p = sub.add_parser("train", help="train a model into a run folder, then evaluate it on the test split",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN",
                   help="continue a run from its last checkpoint: RUN, or --out/--name when omitted")
    add_json_flag(p, "the final summary")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(func=run)


def config_from_args(args) -> TrainConfig:
    try:
        return TrainConfig.from_dict(config_fields(args)).validate()
    except TypeError as err:
        raise DensekitError(f"bad config value: {err}") from None


def config_fields(args) -> dict:
    """The TrainConfig fields the command line sets: --recipe, then --config, then flags."""
    fields = {}
    if args.recipe:
        fields.update(load_recipe(args.recipe))
    if args.config:
        fields.update(load_yaml(args.config))
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "model_args":
            pairs = {}
            for item in value:
                key, sep, val = item.partition("=")
                if not sep:
                    raise DensekitError(f"--model-arg {item!r}: write KEY=VALUE, e.g. growth_rate=24")
                pairs[key.replace("-", "_")] = _value(val)
            value = {**fields.get("model_args", {}), **pairs}
        elif f.name == "milestones":
            value = [float(v) for v in str(value).split(",")]
        fields[f.name] = value
    if "time_budget" in fields:
        fields["time_budget"] = parse_duration(fields["time_budget"])
    return fields


def run(args) -> int:
    from pathlib import Path

    from ..api import train
    cfg = config_from_args(args)
    resume = None
    if args.resume:
        resume = Path(args.resume) if args.resume is not True else _latest_run(cfg)
    extend = {}
    if resume is not None:   # the run's own settings; only an explicit --epochs or --time-budget extends it
        extend = {k: getattr(cfg, k) for k in ("epochs", "time_budget") if getattr(args, k) is not None}
    result = train(None if resume else cfg, resume=resume, verbose=not args.quiet and not args.json, **extend)
    from ..engine.distributed import world
    if world()[0] != 0:   # under torchrun, rank 0 reports
        return 0
    if result.summary.get("signal"):   # stopped by SIGINT/SIGTERM: the shell's convention, 128 + N
        return 128 + result.summary["signal"]
    if args.json:
        print_json(result.summary)
    elif args.quiet:   # otherwise training printed this line itself
        print(result.result_line())
    return 0


def _latest_run(cfg: TrainConfig):
    from pathlib import Path
    out = Path(cfg.out)
    if cfg.name:
        return out / cfg.name
    runs = sorted((p for p in out.glob("*/checkpoints/last.pt")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DensekitError(f"--resume: no run with a checkpoint under {out}; give the run folder: --resume RUN")
    return runs[-1].parent.parent
