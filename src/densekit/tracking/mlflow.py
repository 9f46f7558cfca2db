"""MLflow tracking through MLflow's own client (``--tracker mlflow``), so ``mlflow ui`` lists the runs:

    params     the run's settings (as the TensorBoard hparams: model arguments as model.KEY)
    metrics    every numeric figure of each epoch's record (train_loss, val_top1, lr, ...) at step = epoch,
               then the summary's figures (test_top1, test_top5, duration_s, params ...)
    artifacts  config.yaml, summary.json, metrics.jsonl / .csv, the PNG plots (plots/), the best
               checkpoint (model/best.pt: what densekit eval / predict / export / serve take) and its
               weights as safetensors with their metadata (model/model.safetensors)
    tags       densekit.run_dir (the run folder), model, dataset, status

The store is ``--tracking-uri``, by default ``sqlite:///OUT/mlflow.db`` with artifacts in
``OUT/mlartifacts`` (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``); the experiment is
named after the --out folder. The run folder keeps the MLflow run's id (``mlflow.json``), so a
resumed run continues the same MLflow run.

Tracking never stops training: a store that cannot be reached or written gets one warning line,
and the run goes on without MLflow. HTTP stores get no retries and a 5 s timeout unless
MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_TIMEOUT say otherwise.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from ..engine.callbacks import Callback
from .tensorboard import hparams_of

_STATUS = {"finished": "FINISHED", "stopped": "KILLED"}
_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "metrics.csv")


def default_uri(out: str | Path) -> str:
    return "sqlite:///" + str((Path(out).expanduser().resolve() / "mlflow.db"))


def _numbers(record: dict) -> dict:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class MLflowCallback(Callback):
    def __init__(self):
        self.client, self.run_id = None, None

    def _guard(self, what: str, fn, *args):
        """Call ``fn``; on the first failure warn once and leave MLflow alone for the rest of the run."""
        if self.client is None and fn != self._open:
            return None
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - any failure of the store (network, disk, SQL) must not end training
            line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            print(f"densekit: warning: MLflow {what} failed ({line}); training goes on without MLflow tracking",
                  file=sys.stderr, flush=True)
            self.client = None
            return None

    def on_train_start(self, ctx):
        self._guard("run start", self._open, ctx)

    def _open(self, ctx):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")   # an unreachable server: fail fast, once
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        for name in ("alembic", "mlflow"):    # the store's schema migrations log at INFO on a new database
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient
        out = Path(ctx.cfg.out).expanduser().resolve()
        self.uri = ctx.cfg.tracking_uri or default_uri(out)
        self.client = MlflowClient(tracking_uri=self.uri)
        self._start(ctx, out)

    def _start(self, ctx, out: Path):
        from mlflow.entities import Param, RunTag
        saved = ctx.run.path / "mlflow.json"
        known = json.loads(saved.read_text()) if saved.is_file() else {}
        if known.get("tracking_uri") == self.uri and ctx.epoch > 0:   # a resumed run: the same MLflow run
            self.run_id = known["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = out.name or "densekit"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:   # artifacts beside the store, not in whatever folder the process runs in
            location = (out / "mlartifacts").as_uri() if self.uri.startswith(("sqlite:", "file:", "/")) else None
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        cfg = ctx.cfg
        tags = {"densekit.run_dir": str(ctx.run.path), "model": cfg.model, "dataset": cfg.dataset}
        run = self.client.create_run(experiment_id, run_name=ctx.run.path.name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in hparams_of(cfg).items()]
        for i in range(0, len(params), 100):          # MLflow takes up to 100 params a batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.note.content", f"densekit run folder {ctx.run.path}")])
        ctx.run.write_json("mlflow.json", {"tracking_uri": self.uri, "run_id": self.run_id,
                                           "experiment_id": experiment_id})

    def on_epoch_end(self, ctx, record):
        self._guard("logging", self._log, record, int(record["epoch"]))

    def _log(self, record: dict, step: int):
        from mlflow.entities import Metric
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in _numbers(record).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, ctx, summary):
        self._guard("logging", self._log, summary, ctx.epoch)
        self._guard("artifact upload", self._artifacts, ctx)
        self._guard("run end", self._end, summary.get("status", "failed"))

    def _end(self, status: str):
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, _STATUS.get(status, "FAILED"))

    def _artifacts(self, ctx):
        run = ctx.run.path
        for name in _FILES:
            if (run / name).is_file():
                self.client.log_artifact(self.run_id, str(run / name))
        if (run / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(run / "plots"), "plots")
        best = ctx.run.checkpoint("best")
        best = best if best.is_file() else ctx.run.checkpoint("last")
        if best.is_file():
            self.client.log_artifact(self.run_id, str(best), "model")
            from ..workflows.export import export    # plain weights + metadata: create_model(name, weights=PATH)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.safetensors"
                export(best, "safetensors", out=path, verify=False)
                self.client.log_artifact(self.run_id, str(path), "model")
