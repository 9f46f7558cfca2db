"""`densekit train`: every TrainConfig field is a flag (``--batch-size``, ``--no-tensorboard``...).

Precedence, lowest first: defaults, ``--recipe NAME``, ``--config FILE.yaml``, flags. Every value
is checked (config.py) before any data is read. With --resume, --epochs and --time-budget extend
the run, machine and tracking flags apply, and a flag that contradicts the run is refused.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from ..config import GROUPS, TABLE_FIELDS, TrainConfig, load_recipe, load_yaml
from ..errors import DensekitError
from .common import add_json_flag, print_json


def _value(text: str):
    """A YAML scalar: 3 -> int, 0.1 -> float, true -> bool, [6,12] -> list, none -> None, else the string."""
    import yaml
    if text.strip().lower() in ("none", "null", "~"):
        return None
    try:
        return yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - PyYAML's constructors raise several types (`!!int x`): then it is a string
        return text


def help_for(f: dataclasses.Field) -> str:
    """A flag's help from the field's metadata in config.py: meaning, choices, range, default."""
    meta = f.metadata
    text = meta["help"]
    choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
    if choices and len(choices) <= 12:
        text += f"; one of {', '.join(str(c) for c in choices)}"
    if meta["interval"] and f.name not in ("milestones",):
        text += f"; in {meta['interval'][0]}"
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if default is None:
        shown = meta["none"]
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, list):
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or meta["none"] or "none"
    elif isinstance(default, dict):
        shown = "the model's own" if not default else repr(default)
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text} (default: {shown})".replace("%", "%%")


def _metavar(name: str, kind) -> str:
    if len(name) <= 8:
        return name.upper()
    kinds = typing.get_args(kind) + (kind,)
    return "METRIC" if name.endswith("_metric") else "N" if int in kinds else "X" if float in kinds else "NAME"


def add_config_flags(p: argparse.ArgumentParser):
    """One flag per TrainConfig field, in config.GROUPS' groups; help and rules come from config.py."""
    hints = typing.get_type_hints(TrainConfig)
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for f in dataclasses.fields(TrainConfig):
        g, flag, kind, help_text = groups[f.metadata["group"]], "--" + f.name.replace("_", "-"), hints[f.name], \
            help_for(f)
        if f.name == "model_args":
            g.add_argument("--model-arg", dest="model_args", action="append", metavar="KEY=VALUE", help=help_text)
        elif f.name == "time_budget":
            g.add_argument(flag, dest=f.name, metavar="DURATION", help=help_text)
        elif kind is bool or kind == (bool | None):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "freeze":
            g.add_argument(flag, dest=f.name, nargs="+", metavar="MODULE", help=help_text)
        elif f.name == "milestones":
            g.add_argument(flag, dest=f.name, metavar="P1,P2", help=help_text)
        elif f.name == "label_cols":
            g.add_argument(flag, dest=f.name, metavar="A,B,C", help=help_text)
        elif f.name in TABLE_FIELDS:    # column names and separators stay text ("1", "none" are names too)
            g.add_argument(flag, dest=f.name, metavar="TEXT" if f.name.endswith(("sep", "label")) else "NAME",
                           help=help_text)
        else:
            g.add_argument(flag, dest=f.name, type=_value, metavar=_metavar(f.name, kind), help=help_text)


def add_parser(sub):
    p = sub.add_parser("train", help="train a model into a run folder, then evaluate it on the test split",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN",
                   help="continue a run from its last checkpoint: RUN, or --out/--name when omitted")
    add_json_flag(p, "the final summary")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    launch = p.add_argument_group("processes (torchrun's elastic agent; docs/distributed.md)")
    launch.add_argument("--nproc", type=int, metavar="N",
                        help="start N training processes on this node (torchrun --nproc_per_node N); "
                             "the batch size stays the global batch")
    launch.add_argument("--max-restarts", type=int, metavar="K",
                        help="with --nproc: restart the processes up to K times when one dies; they resume from last.pt")
    launch.add_argument("--nnodes", metavar="N|MIN:MAX", help="with --nproc: how many nodes take part (default 1)")
    launch.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                        help="with --nproc: the c10d rendezvous every node joins (for --nnodes above 1)")
    add_config_flags(p)
    p.set_defaults(func=run)


def fields_from_args(args) -> dict:
    """The config fields set explicitly: --recipe, then --config, then flags (unchecked)."""
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
                if not sep or not key.strip():
                    raise DensekitError(f"--model-arg {item!r}: write KEY=VALUE, e.g. growth_rate=24")
                pairs[key.strip().replace("-", "_")] = _value(val)
            base = fields.get("model_args") or {}
            value = {**base, **pairs} if isinstance(base, dict) else pairs
        elif f.name == "milestones":
            value = [_value(v) for v in str(value).split(",")]
        elif f.name == "label_cols":
            value = [v.strip() for v in str(value).split(",")]
        fields[f.name] = value
    return fields


def config_from_args(args) -> TrainConfig:
    return TrainConfig.from_dict(fields_from_args(args)).validate()


def run(args) -> int:
    from pathlib import Path

    from ..api import train
    fields = fields_from_args(args)
    if args.nproc is not None:
        return _launch(args, TrainConfig.from_dict(fields).validate())
    given = [f for f in ("max_restarts", "nnodes", "rdzv_endpoint") if getattr(args, f) is not None]
    if given:
        raise DensekitError(f"--{given[0].replace('_', '-')} only acts with --nproc N (this command starts the processes)")
    if args.resume:   # the run's own settings; what the flags may change is TrainConfig.resume_overrides'
        if args.resume is not True and (args.out is not None or args.name is not None):
            raise DensekitError(f"--resume {args.resume} names the run already; drop --out/--name "
                                "(they find the run when --resume has no RUN)")
        located = TrainConfig.from_dict({k: v for k, v in fields.items() if k in ("out", "name")})
        resume = Path(args.resume) if args.resume is not True else _latest_run(located)
        result = train(None, resume=resume, verbose=not args.quiet and not args.json, **fields)
    else:
        result = train(TrainConfig.from_dict(fields).validate(), verbose=not args.quiet and not args.json)
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

    from ..engine.run import RunFolder
    out = Path(cfg.out)
    if cfg.name:
        return out / cfg.name
    lasts = [run.checkpoint("last") for run in map(RunFolder, sorted(out.glob("*/")))]
    runs = sorted((p for p in lasts if p.is_file()), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DensekitError(f"--resume: no run with a checkpoint under {out}; give the run folder: --resume RUN")
    return runs[-1].parent.parent


_LAUNCH_FLAGS = ("--nproc", "--max-restarts", "--nnodes", "--rdzv-endpoint")


def _launch(args, cfg: TrainConfig) -> int:
    """``densekit train --nproc N ARGS``: torchrun's elastic agent running ``densekit train ARGS``.
    The run name is fixed here, once, so restarted workers find the run folder and resume it."""
    from ..engine.distributed import launch
    from ..engine.run import default_name
    rest, argv = [], list(args.argv[args.argv.index("train") + 1:])
    while argv:
        item = argv.pop(0)
        flag = item.split("=", 1)[0]
        if flag in _LAUNCH_FLAGS:
            if "=" not in item and argv:
                argv.pop(0)
            continue
        rest.append(item)
    nnodes = args.nnodes or "1"
    if not args.resume and not cfg.name:
        if nnodes not in ("1", "1:1"):
            raise DensekitError("a run over several nodes needs --name NAME, the same on every node")
        rest += ["--name", default_name(cfg.model, cfg.dataset)]
    launch(rest, args.nproc, max_restarts=args.max_restarts or 0, nnodes=nnodes,
           rdzv_endpoint=args.rdzv_endpoint, rdzv_id=cfg.name)
    return 0
