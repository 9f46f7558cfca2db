"""``densekit sweep --search optuna``: a hyper-parameter search with Optuna (Akiba et al., KDD 2019).

Optuna's TPE sampler proposes each trial's values from the ``--space`` (``lr=log(1e-3,0.3)``,
``weight_decay=log(1e-5,1e-3)``, ``augment=choice(flip,crop,trivialaugment)``, ``growth_rate=int(8,24)``);
each trial trains an ordinary run folder ``SWEEP/trial-NNN``; a trainer callback reports the
per-epoch validation metric (``rank_by``) to Optuna, whose median (or successive-halving) pruner
stops a trial that falls behind the others at the same epoch. Trials are ranked by that
validation metric only; the test figures are shown, never used.

The study lives in ``SWEEP/study.db`` (Optuna's RDB storage on SQLite), so running the same command
again continues a killed or interrupted search: trials that were cut off are run again with the
same values, resuming their run folders from their last checkpoint (their finished epochs are
reported to the pruner again), and the search stops when ``trials`` trials have finished. A
``time_budget`` on the base config is the whole search's: each trial trains for what is left
divided by the trials left, so time a pruned trial did not use goes to the later ones.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import yaml

from ..config import _FLOAT, TrainConfig
from ..engine.callbacks import Callback
from ..engine.run import check_run_name
from ..errors import DensekitError
from .sweep import FIELDS, best_of, check_keys, check_rank_by, rank, split_choice, sweep_table
from ..tracking.runs import run_row

PRUNERS = ("median", "halving", "none")
_SPEC = re.compile(r"(log|uniform|int|choice)\((.*)\)")


def parse_space(items: list[str]) -> dict[str, tuple]:
    """``["lr=log(1e-3,0.3)", "augment=choice(flip,crop)"]`` -> ``{"lr": ("log", 1e-3, 0.3), "augment":
    ("choice", "flip", "crop")}``: log / uniform floats, int whole numbers, choice YAML values."""
    space = {}
    for item in items:
        key, sep, spec = item.partition("=")
        key = key.strip().replace("-", "_")
        m = _SPEC.fullmatch(spec.strip())
        usage = "write KEY=log(LO,HI), uniform(LO,HI), int(LO,HI) or choice(A,B,...), e.g. lr=log(1e-3,0.3)"
        if not sep or not key or not m:
            raise DensekitError(f"--space {item!r}: {usage}")
        if key in space:
            raise DensekitError(f"--space {key} is given twice")
        kind, args = m.group(1), [_yaml(a) for a in re.split(r",(?![^\[]*\])", m.group(2))]
        if kind == "choice":
            if len(args) < 2:
                raise DensekitError(f"--space {item!r}: a choice takes two values or more")
        else:
            whole = kind == "int"
            ok = len(args) == 2 and all(isinstance(a, int if whole else (int, float)) and not isinstance(a, bool)
                                        and math.isfinite(a) for a in args) and args[0] < args[1]
            if not ok or (kind == "log" and args[0] <= 0):
                what = "whole numbers" if whole else "positive numbers" if kind == "log" else "numbers"
                raise DensekitError(f"--space {item!r}: {kind} takes two {what} LO < HI; {usage}")
        space[key] = (kind, *args)
    if not space:
        raise DensekitError("--search optuna needs --space KEY=SPEC, e.g. --space 'lr=log(1e-3,0.3)'")
    return space


def _yaml(text: str):
    """A YAML value, with 1e-3 a float (YAML 1.1 reads it as a string without a dot)."""
    value = yaml.safe_load(text.strip())
    return float(value) if isinstance(value, str) and _FLOAT.fullmatch(value) else value


def _check_space(base: TrainConfig, space: dict):
    """Every value the space can give is a valid setting: its ends, and each choice."""
    check_keys(base, space)
    for key, (kind, *args) in space.items():
        if key not in FIELDS:
            continue     # a model argument: checked when the trial builds the model
        for value in args:
            try:
                base.replace(**{key: value}).validate()
            except DensekitError as err:
                raise DensekitError(f"--space {key}: {err}") from None


def _suggest(trial, space: dict) -> dict:
    chosen = {}
    for key, (kind, *args) in space.items():
        if kind == "choice":   # Optuna's categories are scalars: lists ([3,3]) go through their JSON text
            chosen[key] = json.loads(trial.suggest_categorical(key, [json.dumps(a) for a in args]))
        elif kind == "int":
            chosen[key] = trial.suggest_int(key, args[0], args[1])
        else:
            chosen[key] = trial.suggest_float(key, float(args[0]), float(args[1]), log=kind == "log")
    return chosen


class ReportToOptuna(Callback):
    """Reports each epoch's ``metric`` to the trial and stops the run when the pruner says so; a
    resumed run first reports the epochs it had finished, so the pruner sees the whole curve."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_train_start(self, ctx):
        for record in ctx.run.read_metrics():
            if record.get(self.metric) is not None:
                self.trial.report(record[self.metric], record["epoch"])

    def on_epoch_end(self, ctx, record):
        if record.get(self.metric) is None:
            return
        self.trial.report(record[self.metric], record["epoch"])
        if self.trial.should_prune():
            self.pruned = True
            ctx.stop = True


class _Interrupted(Exception):
    """SIGINT/SIGTERM stopped a trial: the search stops, and the same command continues it."""


def _optuna():
    try:
        import optuna
    except ImportError:
        from ..extras import missing_extra
        raise missing_extra("--search optuna", "search", "optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # densekit prints one line per trial itself
    return optuna


def _pruner(optuna, name: str, trials: int):
    if name not in PRUNERS:
        raise DensekitError(f"--pruner {name!r}: choose {', '.join(PRUNERS)}")
    # Steps are epochs from 1. Pruning starts at epoch 2: the first epoch of a warm-up schedule says
    # little, and a one-epoch trial has nothing left to save.
    if name == "median":   # against the median of the earlier trials at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, trials // 4)), n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _counted(study) -> list:
    """The finished trials that count towards ``trials``: not those cut off and queued again."""
    again = {t.user_attrs["requeued_from"] for t in study.trials if "requeued_from" in t.user_attrs}
    return [t for t in study.trials if t.state.is_finished() and t.number not in again]


def _spent(study) -> float:
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in _counted(study)
               if t.datetime_complete and t.datetime_start)


def _requeue_cut_trials(study, optuna) -> int:
    """Trials a kill left RUNNING (or a signal stopped) are failed and queued again with their values;
    the new trial resumes the cut one's run folder."""
    states, queued = optuna.trial.TrialState, 0
    again = {t.user_attrs["requeued_from"] for t in study.trials if "requeued_from" in t.user_attrs}
    for t in study.trials:
        cut = t.state == states.RUNNING or (t.state == states.FAIL and t.user_attrs.get("interrupted"))
        if not cut or t.number in again:
            continue
        if t.state == states.RUNNING:
            study.tell(t.number, state=states.FAIL)
        study.enqueue_trial(t.params, user_attrs={"resume": t.user_attrs.get("run"), "requeued_from": t.number})
        queued += 1
    return queued


def run_search(base: TrainConfig, space: dict, trials: int, verbose: bool = True, rank_by: str = "val_top1",
               pruner: str = "median") -> dict:
    """Run (or continue) the search; returns ``{"rows": ranked trials, "best": row, "command",
    "study", "plot"}``. ``base.time_budget``, when set, is the whole search's."""
    from ..api import train
    check_rank_by(rank_by)
    if trials < 1:
        raise DensekitError(f"--trials {trials}: give a whole number of at least 1")
    _check_space(base, space)
    optuna = _optuna()
    sweep = Path(base.out) / check_run_name(base.name or f"search-{time.strftime('%Y%m%d-%H%M%S')}")
    sweep.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{sweep.resolve() / 'study.db'}"
    direction = "minimize" if rank_by.endswith("loss") else "maximize"
    study = optuna.create_study(study_name=sweep.name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=base.seed,
                                                                   n_startup_trials=min(10, max(1, trials // 3))),
                                pruner=_pruner(optuna, pruner, trials))
    queued = _requeue_cut_trials(study, optuna)
    if verbose and queued:
        print(f"search {sweep}: continuing; {queued} cut-off trial(s) run again with their values", flush=True)
    budget = base.time_budget

    def objective(trial):
        chosen = _suggest(trial, space)
        counted = _counted(study)
        left = max(trials - len(counted), 1)
        fields, model_args = split_choice(base, chosen)
        if budget:
            fields["time_budget"] = max((budget - _spent(study)) / left, 1.0)
        resume = trial.user_attrs.get("resume")
        name = Path(resume).name if resume else f"trial-{trial.number:03d}"
        trial.set_user_attr("run", str(sweep / name))
        cfg = base.replace(**fields, model_args=model_args, out=str(sweep), name=name).validate()
        if verbose:
            print(f"trial {len(counted) + 1}/{trials} ({name}): "
                  f"{', '.join(f'{k}={_show(v)}' for k, v in chosen.items())}", flush=True)
        report = ReportToOptuna(trial, rank_by)
        if resume and (Path(resume) / "config.yaml").is_file():
            run = train(resume=resume, callbacks=[report], verbose=verbose)
        else:
            if resume:   # cut before its settings were written: nothing in it to keep
                shutil.rmtree(resume, ignore_errors=True)
            run = train(cfg, callbacks=[report], verbose=verbose)
        if run.summary.get("signal"):
            trial.set_user_attr("interrupted", True)
            raise _Interrupted(run.summary["signal"])
        if report.pruned:
            raise optuna.TrialPruned()
        value = best_of(run.metrics, rank_by)
        if value is None:
            raise DensekitError(f"trial {name} recorded no {rank_by}; give --val-split")
        return value

    remaining = trials - len(_counted(study))
    if budget and _spent(study) >= budget:
        remaining = 0
    try:
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, catch=(DensekitError,))
    except _Interrupted as err:
        raise DensekitError(f"search stopped by signal {err}; run the same command to continue it") from None
    return _result(study, optuna, sweep, space, rank_by, storage)


def _show(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _result(study, optuna, sweep: Path, space, rank_by, storage) -> dict:
    from ..engine.run import RunFolder
    states = optuna.trial.TrialState
    rows = []
    for t in _counted(study):
        path = Path(t.user_attrs.get("run", sweep / "-"))
        if not (path / "config.yaml").is_file():
            continue
        row, metrics = run_row(path), RunFolder(path).read_metrics()
        status = {states.PRUNED: "pruned", states.FAIL: "failed"}.get(t.state, row["status"])
        values = {k: json.loads(v) if space[k][0] == "choice" else v for k, v in t.params.items() if k in space}
        rows.append({**row, "trial": t.number, "status": status, "values": values,
                     "error": None, "rank_by": rank_by, "rank_value": best_of(metrics, rank_by)})
    complete = rank([r for r in rows if r["status"] not in ("pruned", "failed")])
    rest = rank([r for r in rows if r["status"] in ("pruned", "failed")])
    ordered = complete + [{**r, "rank": len(complete) + r["rank"]} for r in rest]
    best = complete[0] if complete else None
    command = command_for(sweep / best["name"]) if best else None
    plot = plot_search(study, optuna, sweep / "search.png", rank_by)
    return {"rows": ordered, "best": best, "command": command, "study": storage, "plot": str(plot) if plot else None}


def command_for(run_dir: Path) -> str:
    """The `densekit train` command that trains ``run_dir``'s settings again into a new run folder:
    every setting that differs from the defaults, as flags."""
    import dataclasses
    import shlex

    from ..engine.run import RunFolder
    recorded = {k: v for k, v in RunFolder(run_dir).read_config().items() if k != "resolved"}
    cfg, defaults = TrainConfig.from_dict(recorded), TrainConfig()
    words = ["densekit", "train"]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in ("out", "name") or value == getattr(defaults, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "model_args":   # YAML values: [2,2], 0.5, true
            for k, v in value.items():
                words += ["--model-arg", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().replace(' ', '')}"
                          .removesuffix("...").strip()]
        elif isinstance(value, bool):
            words.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif f.name == "freeze":
            words += [flag, *value]
        elif value is None:
            words += [flag, "none"]
        elif isinstance(value, list):   # milestones, tracker: comma-separated
            words += [flag, ",".join(map(str, value))]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def plot_search(study, optuna, path: Path, rank_by: str) -> Path | None:
    """The search in one PNG: each trial's value (pruned trials at their last report, the best so far
    as a line) and the parameters' importances (Optuna's fANOVA over the finished trials)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import save_figure
    states = optuna.trial.TrialState
    trials = _counted(study)
    if not trials:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    done = [t for t in trials if t.state == states.COMPLETE]
    pruned = [t for t in trials if t.state == states.PRUNED and t.intermediate_values]
    left.scatter([t.number for t in done], [t.value for t in done], label="finished", color="tab:blue")
    left.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                 marker="x", color="tab:gray", label="pruned (last report)")
    if done:
        pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        best, line = None, []
        for t in sorted(done, key=lambda t: t.number):
            best = t.value if best is None else pick(best, t.value)
            line.append((t.number, best))
        left.step(*zip(*line), where="post", color="tab:orange", label="best so far")
    left.set(xlabel="trial", ylabel=f"best {rank_by} of the trial", title="value by trial")
    left.legend(fontsize=8)
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):   # fewer than two finished trials, or one value throughout
        importances = {}
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:green")
        right.set(xlabel="importance (fANOVA)", title="parameter importances")
    else:
        right.text(0.5, 0.5, "importances need two finished trials\nwith different values", ha="center", va="center")
        right.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def search_table(result: dict) -> str:
    return sweep_table([{**r, "values": {k: _show(v) for k, v in r["values"].items()}} for r in result["rows"]])
