"""Forward passes in a process of their own: the server's PyTorch backend.

Why: an eager PyTorch forward pass lets go of the GIL inside each operator and takes it back
between them, hundreds of times a pass. In the server's process the event loop and the decoding
threads take it in between, so under load a pass of 15 images that takes 5.5 ms alone took 15-17
ms (densenet-c-fmnist at concurrency 32: the forward thread on a CPU 46% of the time, waiting in
the run queue 6-9%, the rest waiting for the GIL), and the forward thread was the bottleneck. A
child process has an interpreter of its own. onnxruntime and OpenVINO let go of the GIL for a whole
pass, so their forward passes stay in the server's process by default.

The child loads the model (``backends.load_backend``) and sends back its ``InputSpec`` (as an
export's metadata) and its model card; ``ForwardProcess`` is then the server's ``Predictor``:
decoding, probabilities and the result schema happen in the server's process as for any backend,
which never imports PyTorch itself (an import of PyTorch alone is ~220 MiB resident). The child
answers one batch at a time over a ``multiprocessing`` pipe: a short JSON head, then raw bytes
(uint8 pixels in, float32 logits out), so neither side unpickles anything. It ignores SIGINT (the
server drains, then stops it) and ends when the pipe closes, so it cannot outlive the server. A child that dies (killed, out
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
from ..predictions import Predictor
from ..spec import InputSpec

START_TIMEOUT = 300   # seconds for the child to import PyTorch and load the model


def _child(conn, source: str, backend: str, device: str, tta: str | None, threads: int | None):
    # Ctrl-C reaches every process of the terminal's group: the server drains first, then stops this
    # one. SIGTERM keeps its default: multiprocessing ends daemonic children with it at exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .backends import load_backend
    try:
        model = load_backend(source, backend=backend, device=device, tta=tta, threads=threads)
    except DensekitError as err:   # the one line the user reads, as the server's own load would give it
        conn.send_bytes(json.dumps({"error": str(err)}).encode())
        return
    except Exception as err:  # noqa: BLE001  (reported to the parent, which raises it)
        conn.send_bytes(json.dumps({"error": f"{source}: the model could not be loaded "
                                    f"({type(err).__name__}: {err})"}).encode())
        return
    gc.freeze()   # as the server does (serve/__init__.py): full collections would skip the model's objects
    conn.send_bytes(json.dumps({"spec": model.spec.to_metadata(), "card": model.card}, default=str).encode())
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


class ForwardProcess(Predictor):
    """The ``Predictor`` of ``source`` whose ``logits`` a child process computes (``load_backend(source,
    backend, device, tta, threads)`` there); ``spec`` and ``card`` are the child's. A source that
    cannot be served fails here, with the child's one line."""

    def __init__(self, source, backend: str = "torch", device: str = "auto", tta: str | None = None,
                 threads: int | None = None):
        self.args = (str(source), backend, device, tta, threads)
        self._lock = threading.Lock()
        loaded = self._start()
        self.spec = InputSpec.from_metadata(loaded["spec"], str(source))
        self.card = loaded["card"]
        self.backend, self.path, self.device = self.card["backend"], self.card["source"], self.card["device"]

    def copy(self) -> "ForwardProcess":
        """Another child process of the same model (one per inference worker)."""
        return ForwardProcess(*self.args)

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
        except RuntimeError as err:
            self.close()
            raise DensekitError(f"the forward process did not start: {err}") from None
        if "error" in head:
            self.close()
            raise DensekitError(head["error"])
        return head

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
