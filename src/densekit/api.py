"""``densekit.train``: the engine's Trainer plus the tracking the config asks for.

The engine knows nothing of TensorBoard or plots; this is the one place that joins them, so the
CLI, sweeps and Python users all get the same run folder.
"""
from __future__ import annotations

from pathlib import Path

from .allocator import keep_freed_memory
from .config import TrainConfig
from .engine import Run, Trainer, distributed
from .engine.run import RunFolder, resume_settings
from .tracking import callbacks_for


def train(config: TrainConfig | dict | None = None, resume: str | Path | None = None, callbacks=(),
          verbose: bool = True, command: str | None = None, **overrides) -> Run:
    """Train per ``config`` (fields of ``TrainConfig``, ``overrides`` on top) into a new run folder;
    ``resume=RUN_DIR`` continues that run from its last checkpoint instead, with its own settings:
    ``config``/``overrides`` may extend it (``epochs``, ``time_budget``) and change what the result
    does not depend on (``workers``, ``device``, tracking); any other difference is refused
    (``engine.run.resume_settings``); a finished run that is not extended is returned as it is,
    with ``Run.note`` saying so. ``command``: the command line config.yaml's history records."""
    keep_freed_memory()   # training reuses the same activation blocks every step (allocator.py)
    payload = None
    if resume is not None:
        given = {} if config is None else dict(config) if isinstance(config, dict) else config.to_dict()
        config, note, payload = resume_settings(resume, {**given, **overrides})
        run_cfg = TrainConfig.from_dict({k: v for k, v in RunFolder(resume).read_config().items() if k != "resolved"})
        done = _finished(Path(resume), run_cfg, config)
        if done is not None:   # nothing to train: the test pass, artefacts and TensorBoard stay as they are
            if verbose:
                print(done.note, flush=True)
            return done
        if verbose:
            print(f"{Path(resume)}: {note}", flush=True)
    elif config is None:
        config = TrainConfig.from_dict(overrides)
    else:
        config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
        config = config.replace(**overrides) if overrides else config
    restarted = None
    if resume is None:   # a worker torchrun's elastic agent restarted continues its run folder
        resume = restarted = distributed.elastic_resume(config.out, config.name)
        if restarted is not None:
            config, _, payload = resume_settings(restarted, config.to_dict())
    trainer = Trainer(config, resume=resume, callbacks=callbacks, verbose=verbose, payload=payload, command=command)
    if restarted is not None:
        trainer.log(f"restart {distributed.restart_count()} (torchrun's elastic agent): resuming {restarted} "
                    f"at epoch {trainer.epoch + 1} step {trainer.step_in_epoch}")
        trainer.run.write_status("restarted", restarts=distributed.restart_record(
            trainer.run.read_status(), trainer.epoch, trainer.step_in_epoch))
    trainer.callbacks += callbacks_for(trainer.cfg, trainer.rank)   # on resume: the run's own settings
    run = trainer.fit()
    distributed.shutdown()
    return run


def _finished(path: Path, run_cfg: TrainConfig, config: TrainConfig) -> Run | None:
    """The finished run at ``path`` as it stands, unless ``config`` trains it longer than ``run_cfg``
    did (more epochs, a longer time budget); None when there is something to resume."""
    import json
    folder = RunFolder(path)
    status = folder.read_status()
    if status.get("status") != "finished" or not (path / "summary.json").is_file():
        return None
    longer = config.time_budget > (run_cfg.time_budget or 0) if config.time_budget else config.epochs > run_cfg.epochs
    if longer:
        return None
    summary = json.loads((path / "summary.json").read_text())
    if run_cfg.time_budget:
        from .engine.progress import fmt_time
        how = (f"its time budget of {fmt_time(run_cfg.time_budget)} is spent; to train it longer: densekit train "
               f"--resume {path} --time-budget T (T above {fmt_time(run_cfg.time_budget)})")
    else:
        how = (f"to train it longer: densekit train --resume {path} --epochs N (N above {run_cfg.epochs})")
    run = Run(path, summary, folder.read_metrics())
    run.note = (f"{path}: finished after {summary.get('epochs')} epoch(s), nothing to resume and nothing changed; "
                f"{how}")
    return run
