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
is a fresh interpreter running ``main`` here (multiprocessing's spawn would re-run
the caller's main script, which fails for code read from stdin and recurses in a script without a
``__main__`` guard) and answers one batch at a time over its stdin and stdout: length-prefixed
frames, a short JSON head then raw bytes (uint8 pixels in, float32 logits out), so neither side
unpickles anything; what libraries print goes to its stderr, the server's log. It ignores SIGINT
(the server drains, then stops it) and ends when its stdin closes, so it cannot outlive the
server. A child that dies (killed, out of memory) fails the batch it held with one line and is
started again for the next batch.
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import DensekitError
from ..predictions import Predictor
from ..spec import InputSpec

START_TIMEOUT = 300   # seconds for the child to import PyTorch and load the model
CHILD = "import sys; from densekit.serve.forward import main; sys.exit(main())"
_LENGTH = struct.Struct("<Q")


def send(stream, data) -> None:
    """One frame: its length (8 bytes, little-endian), then ``data``."""
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream) -> bytes:
    """The next frame; EOFError when the other side has gone."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    size = _LENGTH.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def main(argv: list[str] | None = None) -> int:
    """The child: load, report, then answer batches until stdin closes or a stop frame comes."""
    # Ctrl-C reaches every process of the terminal's group: the server drains first, then stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..allocator import keep_freed_memory
    keep_freed_memory()   # a process of densekit's own, as the command's (allocator.py): no page faults per pass
    source, backend, device, tta, threads = json.loads((argv or sys.argv[1:])[-1])
    requests, answers = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)   # a library's print goes to the server's log, not into the frames
    from .backends import load_backend
    try:
        model = load_backend(source, backend=backend, device=device, tta=tta, threads=threads)
    except DensekitError as err:   # the one line the user reads, as the server's own load would give it
        send(answers, json.dumps({"error": str(err)}).encode())
        return 1
    except Exception as err:  # noqa: BLE001  (reported to the parent, which raises it)
        send(answers, json.dumps({"error": f"{source}: the model could not be loaded "
                                  f"({type(err).__name__}: {err})"}).encode())
        return 1
    gc.freeze()   # as the server does (serve/__init__.py): full collections would skip the model's objects
    send(answers, json.dumps({"spec": model.spec.to_metadata(), "card": model.card}, default=str).encode())
    while True:
        try:
            head = json.loads(receive(requests))
            if head.get("stop"):
                return 0
            pixels = np.frombuffer(receive(requests), dtype=np.uint8).reshape(head["shape"])
        except (EOFError, OSError):   # the server is gone
            return 0
        try:
            out = np.ascontiguousarray(model.logits(pixels), dtype=np.float32)
        except Exception as err:  # noqa: BLE001  (this batch fails; the next one may not)
            send(answers, json.dumps({"error": f"{type(err).__name__}: {str(err)[:500]}"}).encode())
            continue
        send(answers, json.dumps({"shape": list(out.shape)}).encode())
        send(answers, memoryview(out).cast("B"))


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

    def _start(self) -> dict:
        # The child imports this densekit, wherever it came from (an install, a checkout on sys.path).
        top = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [top, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(self.args)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            if os.name == "posix" and not select.select([self.process.stdout], [], [], START_TIMEOUT)[0]:
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
            return json.loads(receive(self.process.stdout))
        except (EOFError, OSError, ValueError):
            try:
                self.process.wait(1)
            except subprocess.TimeoutExpired:
                pass
            raise RuntimeError(f"it died (exit code {self.process.poll()})") from None

    def logits(self, pixels) -> np.ndarray:
        x = np.ascontiguousarray(pixels, dtype=np.uint8)
        with self._lock:
            if self.process.poll() is not None:
                self.close()
                self._start()
            try:
                send(self.process.stdin, json.dumps({"shape": list(x.shape)}).encode())
                send(self.process.stdin, memoryview(x).cast("B"))
            except OSError:
                pass   # the child is gone: _head says so
            try:
                head = self._head()   # RuntimeError when the child is gone
                if "error" not in head:
                    out = np.frombuffer(receive(self.process.stdout), dtype=np.float32)
            except (RuntimeError, EOFError) as err:
                raise RuntimeError(f"the forward process stopped ({str(err) or 'mid-answer'}); a new one starts "
                                   "for the next batch") from None
            if "error" in head:
                raise RuntimeError(head["error"])
            return out.reshape(head["shape"])

    def close(self, timeout: float = 10):
        """Stop the child: asked first (a stop frame, then its stdin closed), killed if it does not end
        within ``timeout`` seconds."""
        try:
            send(self.process.stdin, b'{"stop": true}')
            self.process.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

