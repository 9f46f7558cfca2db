"""Reading run folders back: the rows of `densekit runs` and the details of `densekit runs show`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..engine.evaluate import top5_name
from ..engine.run import RunFolder
from ..errors import DensekitError


def find_runs(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (any depth, so sweeps nested in a folder show too), oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise DensekitError(f"{root} is not a folder; give the folder your runs are in (train's --out, default runs)")
    found = [p.parent for p in root.rglob("config.yaml") if (p.parent / "status.json").is_file()]
    if (root / "config.yaml").is_file() and root not in found:
        found.append(root)
    return sorted(found, key=lambda p: (RunFolder(p).read_status().get("started", ""), str(p)))


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def status_of(run: RunFolder) -> tuple[str, str | None]:
    """(status, why it ended). A "running" run whose process is gone (its lock free, its pid dead)
    was killed: "failed"."""
    status = run.read_status()
    state, reason = status.get("status", "unknown"), status.get("reason")
    if state == "running" and not run.in_use() and not _alive(status.get("pid")):
        return "failed", "the process died without recording why (killed?); resume it with densekit train --resume"
    return state, reason


def run_row(path: str | Path, root: str | Path | None = None) -> dict:
    """One run's line in the table: name, model, dataset, status, epochs, best val and test accuracy, duration."""
    run = RunFolder(path)
    cfg, metrics = run.read_config(), run.read_metrics()
    summary_file = run.path / "summary.json"
    summary = read_json(summary_file)
    # multi-label runs: val and test mAP in the accuracy columns
    vals = [m.get("val_top1", m.get("val_map")) for m in metrics if m.get("val_top1", m.get("val_map")) is not None]
    name = str(run.path.relative_to(root)) if root and run.path != Path(root) else run.path.name
    status, reason = status_of(run)
    return {"name": name, "path": str(run.path), "model": cfg.get("model"), "dataset": cfg.get("dataset"),
            "status": status, "reason": reason, "epochs": len(metrics), "planned_epochs": cfg.get("epochs"),
            "best_val_top1": max(vals) if vals else None, "test_top1": summary.get("test_top1", summary.get("test_map")),
            "duration_s": summary.get("duration_s", metrics[-1]["elapsed_s"] if metrics else None)}


def fmt_pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain-text table; ``columns`` are (header, key) and cells are already strings."""
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for h, k in columns]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths))]
    lines += ["  ".join(r[k].ljust(w) for (_, k), w in zip(columns, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


RUN_COLUMNS = [("NAME", "name"), ("MODEL", "model"), ("DATASET", "dataset"), ("STATUS", "status"),
               ("EPOCHS", "epochs"), ("BEST VAL", "best_val"), ("TEST", "test"), ("DURATION", "duration"),
               ("WHY IT ENDED", "reason")]


def runs_table(rows: list[dict]) -> str:
    cells = [{"name": r["name"], "model": str(r["model"]), "dataset": str(r["dataset"]), "status": r["status"],
              "epochs": f"{r['epochs']}/{r['planned_epochs']}", "best_val": fmt_pct(r["best_val_top1"]),
              "test": fmt_pct(r["test_top1"]), "duration": fmt_duration(r["duration_s"]),
              "reason": _short(r["reason"])} for r in rows]
    return table(cells, RUN_COLUMNS)


def _short(text, width: int = 60) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[:width - 3] + "..."


def read_json(path: Path) -> dict:
    """A JSON object file, or {} when it is missing or unreadable (a reader never fails on a run)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def artefacts(path: str | Path) -> list[tuple[str, int]]:
    """Every file in a run folder, relative path and size."""
    path = Path(path)
    return sorted((str(f.relative_to(path)), f.stat().st_size) for f in path.rglob("*") if f.is_file())


def run_details(path: str | Path) -> dict:
    """`densekit runs show --json`: the same facts as ``describe_run``, as one object."""
    run = RunFolder(path)
    cfg, row = run.read_config(), run_row(path)
    resolved = cfg.pop("resolved", {})
    return {**row, "config": cfg, "resolved": resolved, "metrics": run.read_metrics(),
            "summary": read_json(run.path / "summary.json"),
            "artefacts": [{"file": name, "bytes": size} for name, size in artefacts(run.path)]}


def used_settings(cfg: dict, resolved: dict) -> dict:
    """What training chose for the settings left to it (lr None, augment/tta auto, channels_last
    None), from config.yaml's ``resolved`` section; runs from before it recorded them give {}."""
    chosen = {"lr": resolved.get("lr"), "augment": resolved.get("augment"), "tta": resolved.get("tta"),
              "channels_last": resolved.get("channels_last")}
    return {k: v for k, v in chosen.items() if v is not None and cfg.get(k) in (None, "auto")}


def command_history(resolved: dict) -> list[dict]:
    """Every command that trained the run, first first: ``[{"command", "epoch" (where it started),
    "epochs", "time_budget"}]`` (runs from before the history recorded one ``command``)."""
    commands = resolved.get("commands")
    if isinstance(commands, list):
        return [c for c in commands if isinstance(c, dict) and c.get("command")]
    return [{"command": resolved["command"], "epoch": 0}] if resolved.get("command") else []


def unset_text(name: str) -> str:
    """An unset setting as what it means ("none (no clipping)"), not a bare None."""
    import dataclasses

    from ..config import TrainConfig
    meaning = {f.name: f.metadata.get("none") for f in dataclasses.fields(TrainConfig)}.get(name)
    return f"none ({meaning})" if meaning else "none"


def describe_run(path: str | Path) -> str:
    """`densekit runs show`: settings, per-epoch metrics, final results and artefacts, as text."""
    run = RunFolder(path)
    cfg, row = run.read_config(), run_row(path)
    resolved = cfg.pop("resolved", {})
    why = f" ({row['reason']})" if row["reason"] else ""
    out = [f"run {run.path}", f"status {row['status']}{why}", "", "settings:"]
    used = used_settings(cfg, resolved)
    out += [f"  {k}: " + ("none" if v is None and k in used else unset_text(k) if v is None else str(v))
            + (f" (used: {used[k]})" if k in used else "") for k, v in cfg.items()]
    if resolved:
        data = resolved.get("data", {})
        versions = ", ".join(f"{k} {v}" for k, v in resolved.get("versions", {}).items())
        out += [f"  resolved: model args {resolved.get('model', {}).get('args')}",
                f"            {len(data.get('classes', []))} classes, {data.get('channels')} channel(s), "
                f"{data.get('image_size')} px; {resolved.get('device')} {resolved.get('dtype')}"]
        out += [f"            {versions}"] if versions else []
        history = command_history(resolved)
        out += ["  commands:" if len(history) > 1 else "  command:"] if history else []
        out += [f"    from epoch {c.get('epoch', 0)}: {c['command']}" if len(history) > 1 else f"    {c['command']}"
                for c in history]
    metrics = run.read_metrics()
    out += ["", "metrics:"]
    cells = [{"epoch": str(m["epoch"]), "lr": f"{m['lr']:.4g}", "train_loss": f"{m['train_loss']:.4f}",
              "train_top1": fmt_pct(m.get("train_top1", m.get("train_label_acc"))),
              "val_loss": f"{m['val_loss']:.4f}" if "val_loss" in m else "-",
              "val_top1": fmt_pct(m.get("val_top1", m.get("val_map"))), "img_s": f"{m['images_per_s']:.0f}",
              "elapsed": fmt_duration(m["elapsed_s"])} for m in metrics]
    multi = bool(metrics) and "train_label_acc" in metrics[0]
    cols = [("EPOCH", "epoch"), ("LR", "lr"), ("TRAIN LOSS", "train_loss"),
            ("TRAIN LABEL-ACC" if multi else "TRAIN TOP-1", "train_top1"),
            ("VAL LOSS", "val_loss"), ("VAL MAP" if multi else "VAL TOP-1", "val_top1"), ("IMG/S", "img_s"), ("ELAPSED", "elapsed")]
    out += ["  " + line for line in table(cells, cols).splitlines()] if metrics else ["  (no epoch finished yet)"]
    summary_file = run.path / "summary.json"
    if summary_file.is_file():
        s = read_json(summary_file)
        out += ["", "results:"]
        if "test_map" in s:
            out.append(f"  test mAP {fmt_pct(s['test_map'])}  AUROC {fmt_pct(s['test_auroc'])}  exact match "
                       f"{fmt_pct(s['test_exact_match'])}  loss {s['test_loss']:.4f}  ({s['test_count']:,} images)")
        if "test_top1" in s:
            tta = f", {s['test_tta']} TTA; one view {fmt_pct(s['test_top1_single'])}" if "test_top1_single" in s else ""
            out.append(f"  test top-1 {fmt_pct(s['test_top1'])}  {top5_name(len(s.get('per_class') or {}) or 5)} "
                       f"{fmt_pct(s['test_top5'])}  "
                       f"loss {s['test_loss']:.4f}  ({s['test_count']:,} images{tta})")
        out.append(f"  duration {fmt_duration(s.get('duration_s'))}, {s.get('params', 0):,} params, "
                   f"{s.get('train_images_per_s', 0):.0f} train img/s")
    out += ["", "artefacts:"] + [f"  {name}  ({size:,} bytes)" for name, size in artefacts(run.path)]
    return "\n".join(out)
