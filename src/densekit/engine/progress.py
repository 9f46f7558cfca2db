"""A one-line live progress bar on a terminal (stderr); and, when asked (``plain=True``: training,
whose epochs can take half an hour), a plain line on stdout every ``PLAIN_EVERY_S`` seconds when
stdout is not a terminal (nohup, CI, a pipe, ``| tee log``), so its log shows the run is alive."""
from __future__ import annotations

import sys
import time


PLAIN_EVERY_S = 30.0


def fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    def __init__(self, total: int, prefix: str, enabled: bool = True, stream=None, plain: bool = False):
        stream = stream or sys.stderr     # looked up now: the host may have replaced sys.stderr
        self.total, self.prefix, self.stream = total, prefix, stream
        self.enabled = enabled and stream.isatty()
        # stdout is a log: plain lines there, beside the epoch summaries
        self.plain, self.plain_every = enabled and plain and not sys.stdout.isatty(), PLAIN_EVERY_S
        self.start = self.last = self.last_plain = time.perf_counter()

    def update(self, step: int, eta: float | None = None, **fields):
        """Draw ``step`` of ``total``; ``eta`` (seconds) overrides this bar's own forecast, e.g. with
        the whole run's."""
        now = time.perf_counter()
        if self.plain and now - self.last_plain >= self.plain_every and step < self.total:
            self.last_plain = now
            if eta is None:
                eta = (now - self.start) / max(step, 1) * (self.total - step)
            text = ", ".join(f"{k} {v}" for k, v in fields.items())
            if self.enabled:      # the bar shares the terminal when stdout goes through it (tee): clear it first
                self.stream.write("\r\033[K")
            print(f"{self.prefix}: step {step:,}/{self.total:,} ({100 * step / max(self.total, 1):.0f}%)"
                  + (f", {text}" if text else "") + f", ETA {fmt_time(eta)}", flush=True)
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
