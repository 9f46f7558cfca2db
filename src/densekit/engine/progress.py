"""A one-line live progress bar on a terminal; silent elsewhere (logs get the epoch summaries)."""
from __future__ import annotations

import sys
import time


def fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    def __init__(self, total: int, prefix: str, enabled: bool = True, stream=None):
        stream = stream or sys.stderr     # looked up now: the host may have replaced sys.stderr
        self.total, self.prefix, self.stream = total, prefix, stream
        self.enabled = enabled and stream.isatty()
        self.start = self.last = time.perf_counter()

    def update(self, step: int, eta: float | None = None, **fields):
        """Draw ``step`` of ``total``; ``eta`` (seconds) overrides this bar's own forecast, e.g. with
        the whole run's."""
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and step < self.total):
            return
        self.last = now
        frac = step / max(self.total, 1)
        bar = "=" * int(24 * frac) + (">" if frac < 1 else "") + " " * (24 - int(24 * frac))
        if eta is None:
            eta = (now - self.start) / max(step, 1) * (self.total - step)
        text = " ".join(f"{k} {v}" for k, v in fields.items())
        self.stream.write(f"\r{self.prefix} [{bar[:24]}] {step}/{self.total} {text} ETA {fmt_time(eta)}\033[K")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
