"""The run folder: one directory per training run.

    config.yaml            the TrainConfig plus what training resolved (classes, stats, model args)
    status.json            running | finished | failed | diverged | stopped, timings, final summary
    metrics.jsonl          one JSON line per epoch
    checkpoints/last.pt    everything to resume; best.pt by the configured metric
    summary.json           final test metrics

Only rank 0 writes (``RunFolder.main``), so the same code runs under torchrun.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import yaml

from ..errors import DensekitError


def _atomic_write(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    def __init__(self, path: str | Path, main: bool = True):
        self.path, self.main = Path(path), main

    @classmethod
    def create(cls, out: str | Path, name: str | None, main: bool = True) -> "RunFolder":
        """A new folder ``out/name``; without a name, ``<model>-<dataset>-<timestamp>`` is made by the caller."""
        path = Path(out) / name
        if main:
            if (path / "checkpoints").exists() and any((path / "checkpoints").iterdir()):
                raise DensekitError(f"run folder {path} already holds a run; pass --resume to continue it, "
                                    "or choose another --name")
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return cls(path, main)

    # -- paths ------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        return self.checkpoints / f"{which}.pt"

    # -- reads ------------------------------------------------------------------------------
    def read_config(self) -> dict:
        f = self.path / "config.yaml"
        if not f.is_file():
            raise DensekitError(f"{self.path} is not a densekit run folder (no config.yaml)")
        from ..config import load_yaml
        return load_yaml(f)  # one line naming the file for bad YAML or a !!python tag

    def read_metrics(self) -> list[dict]:
        f = self.path / "metrics.jsonl"
        if not f.is_file():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def read_status(self) -> dict:
        f = self.path / "status.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    # -- writes (rank 0 only) -----------------------------------------------------------------
    def write_config(self, config: dict):
        if self.main:
            _atomic_write(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def append_metrics(self, record: dict):
        if self.main:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, epochs_done: int):
        """On resume, drop epoch lines written after the checkpoint we resume from."""
        if self.main:
            kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs_done]
            _atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def write_status(self, status: str, **fields):
        if self.main:
            data = {**self.read_status(), "status": status, "updated": now(), **fields}
            _atomic_write(self.path / "status.json", json.dumps(data, indent=2))

    def write_json(self, name: str, data):
        if self.main:
            _atomic_write(self.path / name, json.dumps(data, indent=2))
