"""``densekit.train``: the engine's Trainer plus the tracking the config asks for.

The engine knows nothing of TensorBoard or plots; this is the one place that joins them, so the
CLI, sweeps and Python users all get the same run folder.
"""
from __future__ import annotations

from pathlib import Path

from .allocator import keep_freed_memory
from .config import TrainConfig
from .engine import Run, Trainer, distributed
from .engine.run import resume_settings
from .tracking import callbacks_for


def train(config: TrainConfig | dict | None = None, resume: str | Path | None = None, callbacks=(),
          verbose: bool = True, **overrides) -> Run:
    """Train per ``config`` (fields of ``TrainConfig``, ``overrides`` on top) into a new run folder;
    ``resume=RUN_DIR`` continues that run from its last checkpoint instead, with its own settings:
    ``config``/``overrides`` may extend it (``epochs``, ``time_budget``) and change what the result
    does not depend on (``workers``, ``device``, tracking); any other difference is refused
    (``engine.run.resume_settings``)."""
    keep_freed_memory()   # training reuses the same activation blocks every step (allocator.py)
    payload = None
    if resume is not None:
        given = {} if config is None else dict(config) if isinstance(config, dict) else config.to_dict()
        config, note, payload = resume_settings(resume, {**given, **overrides})
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
    trainer = Trainer(config, resume=resume, callbacks=callbacks, verbose=verbose, payload=payload)
    if restarted is not None:
        trainer.log(f"restart {distributed.restart_count()} (torchrun's elastic agent): resuming {restarted} "
                    f"at epoch {trainer.epoch + 1} step {trainer.step_in_epoch}")
        trainer.run.write_status("restarted", restarts=distributed.restart_record(
            trainer.run.read_status(), trainer.epoch, trainer.step_in_epoch))
    trainer.callbacks += callbacks_for(trainer.cfg, trainer.rank)   # on resume: the run's own settings
    run = trainer.fit()
    distributed.shutdown()
    return run
