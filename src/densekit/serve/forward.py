"""Forward passes in a process of their own: the server's PyTorch backend.

Why: an eager PyTorch forward pass lets go of the GIL inside each operator and takes it back
between them, hundreds of times a pass. In the server's process the event loop and the decoding
threads take it in between, so under load a pass of 15 images that takes 5.5 ms alone took 15-17
ms (densenet-c-fmnist at concurrency 32: the forward thread on a CPU 46% of the time, waiting in
the run queue 6-9%, the rest waiting for the GIL), and the forward thread was the bottleneck. A
child process has an interpreter of its own. onnxruntime and OpenVINO let go of the GIL for a whole
pass, so their forward passes stay in the server's process by default.

The child loads the same model (``densekit.load_predictor``) and answers one batch at a time over
a ``multiprocessing`` pipe: a short JSON head, then raw bytes (uint8 pixels in, float32 logits out),
so neither side unpickles anything. It ignores SIGINT and SIGTERM (the server drains, then stops
it) and ends when the pipe closes, so it cannot outlive the server. A child that dies (killed, out
of memory) fails the batch it held with one line and is started again for the next batch.
"""
from __future__ import annotations

import gc
import json
import multiprocessing as mp
import signal
import threading

import numpy as np

from ..errors import DensekitError

START_TIMEOUT = 300   # seconds for the child to import PyTorch and load the model


def _child(conn, source: str, device: str, tta: str | None, threads: int | None):
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C and SIGTERM are the server's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .. import load_predictor
    try:
        model = load_predictor(source, device=device, tta=tta, threads=threads)
    except Exception as err:  # noqa: BLE001  (reported to the parent, which raises it)
        conn.send_bytes(json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
        return
    gc.freeze()   # as the server does (serve/__init__.py): full collections would skip the model's objects
    conn.send_bytes(b'{"ready": true}')
    while True:
        try:
            head = json.loads(conn.recv_bytes())
            if head.get("stop"):
                return
            pixels = np.frombuffer(conn.recv_bytes(), dtype=np.uint8).reshape(head["shape"])
        except (EOFError, OSError):   # the server is gone
            return
        try:
            out = np.ascontiguousarray(model.logits(pixels), dtype=np.float32)
        except Exception as err:  # noqa: BLE001  (this batch fails; the next one may not)
            conn.send_bytes(json.dumps({"error": f"{type(err).__name__}: {str(err)[:500]}"}).encode())
            continue
        conn.send_bytes(json.dumps({"shape": list(out.shape)}).encode())
        conn.send_bytes(memoryview(out).cast("B"))


class ForwardProcess:
    """``logits(pixels)`` computed by ``densekit.load_predictor(source, ...)`` in a child process."""

    def __init__(self, source, device: str = "auto", tta: str | None = None, threads: int | None = None):
        self.args = (str(source), device, tta, threads)
        self._lock = threading.Lock()
        self._start()

    def _start(self):
        ctx = mp.get_context("spawn")   # fork would copy the server's threads and locks mid-use
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child, *self.args), name="densekit-forward", daemon=True)
        self.process.start()
        child.close()
        try:
            if not self._conn.poll(START_TIMEOUT):
                raise RuntimeError(f"it did not load the model within {START_TIMEOUT} s")
            head = self._head()
            if "error" in head:
                raise RuntimeError(f"it could not load the model: {head['error']}")
        except RuntimeError as err:
            self.close()
            raise DensekitError(f"the forward process did not start: {err}") from None

    def _head(self) -> dict:
        try:
            return json.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self.process.join(1)
            raise RuntimeError(f"it died (exit code {self.process.exitcode})") from None

    def logits(self, pixels) -> np.ndarray:
        x = np.ascontiguousarray(pixels, dtype=np.uint8)
        with self._lock:
            if not self.process.is_alive():
                self.close()
                self._start()
            try:
                self._conn.send_bytes(json.dumps({"shape": list(x.shape)}).encode())
                self._conn.send_bytes(memoryview(x).cast("B"))
            except OSError:
                pass   # the child is gone: _head says so
            try:
                head = self._head()
            except RuntimeError as err:
                raise RuntimeError(f"the forward process stopped: {err}; a new one starts for the next batch") from None
            if "error" in head:
                raise RuntimeError(head["error"])
            out = np.frombuffer(self._conn.recv_bytes(), dtype=np.float32)
            return out.reshape(head["shape"])

    def close(self, timeout: float = 10):
        """Stop the child: asked first, killed if it does not end within ``timeout`` seconds."""
        try:
            self._conn.send_bytes(b'{"stop": true}')
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()
