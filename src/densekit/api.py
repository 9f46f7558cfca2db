"""``densekit.train``: the engine's Trainer plus the tracking the config asks for.

The engine knows nothing of TensorBoard or plots; this is the one place that joins them, so the
CLI, sweeps and Python users all get the same run folder.
"""
from __future__ import annotations

from pathlib import Path

from .config import TrainConfig
from .engine import Run, RunFolder, Trainer, distributed
from .tracking import callbacks_for


def train(config: TrainConfig | dict | None = None, resume: str | Path | None = None, callbacks=(),
          verbose: bool = True, **overrides) -> Run:
    """Train per ``config`` (fields of ``TrainConfig``, ``overrides`` on top) into a new run folder;
    ``resume=RUN_DIR`` continues that run from its last checkpoint instead, with its own settings
    (``config`` may be omitted then; only ``epochs`` and ``time_budget`` may differ)."""
    if config is None and resume is not None:   # the run's own settings
        config = {k: v for k, v in RunFolder(resume).read_config().items() if k != "resolved"}
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if overrides:
        config = config.replace(**overrides)
    restarted = None
    if resume is None:   # a worker torchrun's elastic agent restarted continues its run folder
        resume = restarted = distributed.elastic_resume(config.out, config.name)
    trainer = Trainer(config, resume=resume, callbacks=callbacks, verbose=verbose)
    if restarted is not None:
        trainer.log(f"restart {distributed.restart_count()} (torchrun's elastic agent): resuming {restarted} "
                    f"at epoch {trainer.epoch + 1} step {trainer.step_in_epoch}")
        trainer.run.write_status("restarted", restarts=distributed.restart_record(
            trainer.run.read_status(), trainer.epoch, trainer.step_in_epoch))
    trainer.callbacks += callbacks_for(trainer.cfg, trainer)   # on resume: the run's own settings
    run = trainer.fit()
    distributed.shutdown()
    return run
