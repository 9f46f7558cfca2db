"""The run folder: one directory per training run, inside its parent (``--out``).

    config.yaml            the TrainConfig plus what training resolved (classes, stats, model args)
    status.json            running | finished | failed | diverged | stopped, why it ended, timings, summary
    metrics.jsonl          one JSON line per finished epoch, rewritten from last.pt's journal
    checkpoints/last.pt    everything to resume, and the commit point (see ``trainer.py``); best.pt
    summary.json           final test metrics (``summary_metrics``: the part export and serve show)
    .lock                  held (``flock``) by the process training the run; the OS releases it on any exit

This module is the one home of that layout: every ``checkpoints/NAME.pt`` path (``checkpoint``,
``find_checkpoint``), the run folder of a checkpoint (``of_checkpoint``), the default run name
(``default_name``) and the settings a run resumes with (``resume_settings``).

Only rank 0 writes (``RunFolder.main``), so the same code runs under torchrun. Every write is
atomic (``files.atomic_write``), so a reader never sees a torn file; readers still tolerate one
(a torn last line of a ``metrics.jsonl`` written by an older densekit) rather than fail.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import os
import re
import shutil
import time
from pathlib import Path

import yaml

from ..errors import DensekitError
from ..files import atomic_write, os_reason, remove_orphans

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@,-]{0,199}$")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def check_run_name(name: str) -> str:
    """A run name is a name, not a path: letters, digits and ``._+=@,-``, not starting with a dot,
    so ``out/name`` is always a folder directly inside ``out``."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise DensekitError(f"run name {name!r} is not a plain name: use letters, digits and . _ - + = @ , "
                            "(no slashes, not starting with a dot); put runs elsewhere with --out")
    return name


def default_name(model: str, dataset: str) -> str:
    """The name of a run given none: model, dataset (without its ``source:`` argument) and the time."""
    return f"{model}-{dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"


# What export metadata and the server's model card take from summary.json: the test figures and
# what they were measured on (per-class tables stay in the file).
SUMMARY_KEYS = ("epochs", "dataset", "params")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a line that does not parse (a torn tail) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _dump(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


class RunFolder:
    def __init__(self, path: str | Path, main: bool = True):
        self.path, self.main = Path(path), main
        self._lock = None

    @classmethod
    def create(cls, out: str | Path, name: str, unique: bool = False) -> "RunFolder":
        """A new run in ``out/name``, locked (rank 0 only). With ``unique`` (a generated name) a taken
        name gets a ``-2``, ``-3``... suffix instead of an error, so runs started in the same second
        never merge. A folder holding only a run killed before its first checkpoint starts afresh."""
        check_run_name(name)
        for n in itertools.count(1):
            run = cls(Path(out) / (name if n == 1 else f"{name}-{n}"))
            holder = run.try_lock()
            state = "" if holder else run._has_run_state()
            if not holder and not state:
                run.reset()
                return run
            run.unlock()
            if not unique:
                if holder:
                    raise DensekitError(f"run folder {run.path} is in use by {holder}; wait for it to end, "
                                        "or choose another --name")
                raise DensekitError(f"run folder {run.path} already holds a run ({state}); pass --resume "
                                    f"{run.path} to continue it, or choose another --name")

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> "RunFolder | None":
        """The run folder a checkpoint file lives in (``RUN/checkpoints/NAME.pt`` beside
        ``RUN/config.yaml``), or None for a checkpoint kept elsewhere."""
        path = Path(checkpoint).resolve()
        run = cls(path.parent.parent)
        return run if path.parent == run.checkpoints and (run.path / "config.yaml").is_file() else None

    @classmethod
    def open(cls, path: str | Path, main: bool = True) -> "RunFolder":
        """An existing run, locked for resuming."""
        run = cls(path, main)
        if main:
            if not (run.path / "config.yaml").is_file():
                raise DensekitError(f"{run.path} is not a densekit run folder (no config.yaml); "
                                    "give a folder made by densekit train")
            run.lock()
        return run

    def _has_run_state(self) -> str:
        """What makes this folder a run that must not be overwritten ('' when there is none)."""
        if self.checkpoint("last").is_file() or self.checkpoint("best").is_file():
            return "it has checkpoints"
        if read_jsonl(self.path / "metrics.jsonl"):
            return "it has recorded epochs but its checkpoints are gone"
        if (self.path / "summary.json").is_file():
            return "it has a summary but its checkpoints are gone"
        return ""

    def reset(self):
        """Empty a folder that never reached its first checkpoint (a kill during the first save)."""
        for p in self.path.iterdir():
            if p.name == ".lock":
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    # -- the lock ---------------------------------------------------------------------------
    def try_lock(self) -> str:
        """Take the folder's exclusive lock: '' on success, else who holds it. The OS drops the lock
        when the process ends, so a run killed with SIGKILL never leaves a stale one. Temporary files
        of killed writes are removed once the lock is held."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            f = open(self.path / ".lock", "a+")
        except OSError as err:
            raise DensekitError(f"cannot write to run folder {self.path}: {os_reason(err)}; "
                                "choose a writable --out") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            return holder
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} (densekit train)")
        f.flush()
        self._lock = f
        remove_orphans(self.path)
        return ""

    def lock(self):
        holder = self.try_lock()
        if holder:
            raise DensekitError(f"run folder {self.path} is in use by {holder}; wait for it to end before "
                                "resuming it")

    def unlock(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def in_use(self) -> bool:
        """True while some process holds the folder's lock (a run in progress)."""
        if self._lock is not None:
            return True
        try:
            with open(self.path / ".lock") as f:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return False

    # -- paths ------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/{which}.pt``: "last" (everything to resume, the commit point) or "best"."""
        return self.checkpoints / f"{which}.pt"

    def find_checkpoint(self, prefer: str = "best") -> Path | None:
        """The checkpoint a run folder stands for: ``prefer``, else last, else best; None before any."""
        return next((p for p in map(self.checkpoint, (prefer, "last", "best")) if p.is_file()), None)

    # -- reads ------------------------------------------------------------------------------
    def read_config(self) -> dict:
        f = self.path / "config.yaml"
        if not f.is_file():
            raise DensekitError(f"{self.path} is not a densekit run folder (no config.yaml)")
        from ..config import load_yaml
        return load_yaml(f)  # one line naming the file for bad YAML, a !!python tag, not a mapping

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def read_summary(self) -> dict:
        """summary.json ({} before the run finished, or for a torn file)."""
        try:
            data = json.loads((self.path / "summary.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def summary_metrics(self) -> dict:
        """The test metrics of summary.json (``test_*``: top-1, top-5, loss, count, TTA, the checkpoint
        they were measured on) and ``epochs``, ``dataset``, ``params``; {} without a summary."""
        return {k: v for k, v in self.read_summary().items() if k.startswith("test_") or k in SUMMARY_KEYS}

    def read_status(self) -> dict:
        f = self.path / "status.json"
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # -- writes (rank 0 only) -----------------------------------------------------------------
    def write_config(self, config: dict):
        if self.main:
            atomic_write(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False), durable=False)

    def write_metrics(self, records: list[dict]):
        """Rewrite metrics.jsonl whole (from the checkpoint's journal: the two always agree)."""
        if self.main:
            atomic_write(self.path / "metrics.jsonl", _dump(records), durable=False)

    def write_status(self, status: str, **fields):
        if self.main:
            data = {**self.read_status(), "status": status, "updated": now(), **fields}
            atomic_write(self.path / "status.json", json.dumps(data, indent=2), durable=False)

    def write_json(self, name: str, data):
        if self.main:
            atomic_write(self.path / name, json.dumps(data, indent=2), durable=False)


def resume_settings(run_dir: str | Path, given: dict) -> tuple:
    """(settings, note, last checkpoint or None) to resume ``run_dir`` with: its config.yaml with the
    fields set explicitly (``given``) applied as ``TrainConfig.resume_overrides`` allows, then held
    against its ``checkpoints/last.pt`` (None when the run was killed before its first), whose own
    settings win: a last.pt of another run is refused. The one place a resume is reconciled."""
    from ..config import TrainConfig
    from .checkpoint import load_checkpoint
    run = RunFolder(run_dir)
    recorded = TrainConfig.from_dict({k: v for k, v in run.read_config().items() if k != "resolved"})
    cfg, note = recorded.resume_overrides(given)
    payload = None
    if run.checkpoint("last").is_file():
        payload = load_checkpoint(run.checkpoint("last"))
        cfg, _ = TrainConfig.from_dict(payload["config"]).resume_overrides(cfg.to_dict(), "checkpoints/last.pt",
                                                                            "config.yaml")
    return cfg, note, payload
