"""Hyper-parameter sweeps (the seed notes' TensorBoard sweep): every combination of a grid trains
into its own named run folder under one sweep folder, then the runs are ranked.

    runs/SWEEP/lr0.1-growth_rate12/ ...   one ordinary run folder per combination

so `densekit runs runs/SWEEP` lists them and `tensorboard --logdir runs/SWEEP` compares their
curves and, in the HPARAMS tab, their settings against their final metrics. The runs are ranked
by a validation metric (``rank_by``, default the best val_top1 over the epochs), never by the test
set: choosing hyper-parameters on the test set would make its figure optimistic.
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import re
import time

import yaml

from ..config import TrainConfig
from ..engine.run import check_run_name
from ..errors import DensekitError
from ..tracking.runs import fmt_duration, fmt_pct, run_row, table

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}   # what a grid or a search space may set besides model arguments


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["lr=0.1,0.05", "block_config=[3,3],[6,6]"]`` -> ``{"lr": [0.1, 0.05], "block_config": [[3, 3], [6, 6]]}``."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not values.strip():
            raise DensekitError(f"--grid {item!r}: write KEY=V1,V2,..., e.g. --grid lr=0.1,0.05")
        if key in grid:
            raise DensekitError(f"--grid {key} is given twice; list all its values in one --grid")
        parts = re.split(r",(?![^\[]*\])", values)     # commas inside [..] belong to a list value
        grid[key] = [yaml.safe_load(p.strip()) for p in parts]
    return grid


def check_keys(base: TrainConfig, grid: dict):
    """A key that is neither a config field nor an argument of the model fails now, not after hours."""
    from ..models import get_entry
    builder = get_entry(base.model).builder
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in grid:
        if key not in FIELDS and key not in params and not takes_any:
            raise DensekitError(f"--grid {key}: not a training setting nor an argument of model {base.model}; "
                                f"see `densekit train --help` and `densekit models {base.model}`")
        if key in ("name", "out"):
            raise DensekitError(f"--grid {key}: a sweep names its run folders itself; give --name for the sweep")


def split_choice(base: TrainConfig, chosen: dict) -> tuple[dict, dict]:
    """(config fields, the model arguments with ``base``'s) of one combination or trial's values."""
    fields = {k: v for k, v in chosen.items() if k in FIELDS}
    return fields, {**base.model_args, **{k: v for k, v in chosen.items() if k not in FIELDS}}


def _label(value) -> str:
    text = "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9._x-]", "", text)


def combinations(base: TrainConfig, grid: dict) -> list[tuple[dict, TrainConfig]]:
    """One (values, config) per combination, in grid order; model arguments go into ``model_args``."""
    check_keys(base, grid)
    sweep = check_run_name(base.name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")   # a name, not a path
    out = []
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values))
        fields, model_args = split_choice(base, chosen)
        name = "-".join(f"{k}{_label(v)}" for k, v in chosen.items())
        cfg = base.replace(**fields, model_args=model_args, out=f"{base.out}/{sweep}", name=name)
        out.append((chosen, cfg.validate()))
    return out


RANK_METRICS = ("val_top1", "val_top5", "val_loss", "train_top1", "train_loss")


def check_rank_by(metric: str) -> str:
    """Ranking picks hyper-parameters, so it uses a per-epoch metric: choosing them by the test
    set would make the test figure an optimistic estimate."""
    if metric not in RANK_METRICS:
        extra = " (the test set must not choose hyper-parameters)" if metric.startswith("test") else ""
        raise DensekitError(f"--rank-by {metric!r}: not a per-epoch metric{extra}; use one of {', '.join(RANK_METRICS)}")
    return metric


def best_of(metrics: list[dict], metric: str):
    """The best value of ``metric`` over the epochs (lowest for a loss), or None when never recorded."""
    values = [m[metric] for m in metrics if m.get(metric) is not None]
    if not values:
        return None
    return min(values) if metric.endswith("loss") else max(values)


def run_sweep(base: TrainConfig, grid: dict, verbose: bool = True, rank_by: str = "val_top1") -> list[dict]:
    """Train every combination; a combination that fails or diverges is recorded and the sweep goes on.
    The runs are ranked by the best ``rank_by`` over their epochs (by default the best validation top-1)."""
    from ..api import train
    from ..engine.run import RunFolder
    check_rank_by(rank_by)
    rows = []
    plan = combinations(base, grid)
    for i, (chosen, cfg) in enumerate(plan, 1):
        if verbose:
            print(f"sweep {i}/{len(plan)}: {', '.join(f'{k}={v}' for k, v in chosen.items())}", flush=True)
        error = None
        try:
            train(cfg, verbose=verbose)
        except DensekitError as err:
            error = str(err)
            if verbose:
                print(f"  {error}", flush=True)
        path = f"{cfg.out}/{cfg.name}"
        row = run_row(path)
        rows.append({**row, "values": chosen, "error": error, "rank_by": rank_by,
                     "rank_value": best_of(RunFolder(path).read_metrics(), rank_by)})
    return rank(rows)


def rank(rows: list[dict]) -> list[dict]:
    """Best first by ``rank_value`` (lowest first for a loss); runs without it last."""
    lower = bool(rows) and rows[0]["rank_by"].endswith("loss")
    ordered = sorted(rows, key=lambda r: (r["rank_value"] is None,
                                          (r["rank_value"] or 0.0) * (1 if lower else -1)))
    return [{**r, "rank": i} for i, r in enumerate(ordered, 1)]


def sweep_table(rows: list[dict]) -> str:
    keys = list(rows[0]["values"]) if rows else []
    by = rows[0]["rank_by"] if rows else "val_top1"
    show = (lambda v: "-" if v is None else f"{v:.4f}") if by.endswith("loss") else fmt_pct
    cells = [{"rank": str(r["rank"]), "run": r["name"], **{k: str(r["values"][k]) for k in keys},
              "status": r["status"], "by": show(r["rank_value"]), "test": fmt_pct(r["test_top1"]),
              "duration": fmt_duration(r["duration_s"])} for r in rows]
    # the test column is shown, never ranked by
    columns = [("RANK", "rank"), ("RUN", "run"), *[(k.upper(), k) for k in keys], ("STATUS", "status"),
               (f"BEST {by.upper()} (RANKED)", "by"), ("TEST", "test"), ("DURATION", "duration")]
    return table(cells, columns)
