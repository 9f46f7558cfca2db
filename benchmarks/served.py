"""`densekit serve` in a subprocess on 127.0.0.1 for the serving benchmarks (serve_load.py,
serve_abuse.py): its output in a log file, ready once /ready answers 200, its resources read from
/proc (with its children's: the torch backend's forward process), stopped whatever happens."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx


class Server:
    def __init__(self, source, flags: list[str], log: Path):
        self.log, self.url, self.port = log, None, None
        self.out = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "densekit", "serve", str(source), "--port", "0",
                                      "--log-level", "warning", *flags], stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.url is None and (m := re.search(r"http://127\.0\.0\.1:(\d+)", self.log.read_text())):
                self.url, self.port = f"http://127.0.0.1:{m.group(1)}", int(m.group(1))
            if self.url:
                try:
                    if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def _statuses(self):
        """(pid, /proc status text) of the server and its children."""
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            pid, parent = int(status.parent.name), int(re.search(r"PPid:\s+(\d+)", text).group(1))
            if self.proc.pid in (pid, parent):
                yield pid, text

    def rss_mib(self, field: str = "VmRSS") -> float:
        """The resident memory of the server and its children."""
        return sum(int(m.group(1)) for _, text in self._statuses()
                   if (m := re.search(rf"{field}:\s+(\d+) kB", text))) / 1024

    def cpu_seconds(self) -> float:
        """CPU time the server's own process has used (not its children's), or nan off Linux."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return float("nan")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
