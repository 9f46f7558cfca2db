"""Dynamic batching: images of concurrent requests gathered into one forward pass.

A worker thread takes the oldest waiting image, then keeps taking more until it holds
``max_batch_size`` of them or ``max_delay`` has passed since that oldest one arrived, and runs
them in one call of ``fn``. With ``announced``, the caller marks each request on its way (read,
being decoded) with ``coming()``, and a forming batch waits only while one is: a lone request is not
held back ``max_delay`` for company that is not coming (at concurrency 1 that wait halved the
server's requests/s), while requests already being decoded still join the batch. The queue is
bounded (``queue_size`` images), and a request's images go in together or not at all, so a full
queue refuses a request at once instead of growing.
Forward passes run in these threads, never on the event loop (PyTorch and onnxruntime release
the GIL while they compute). ``close`` stops taking requests and returns once everything queued
has been answered: the drain that a graceful shutdown waits for.

Written here rather than taken from a library because the serving libraries that batch (LitServe,
Ray Serve, Triton) each bring a whole server of their own; this is ~100 lines on ``threading``.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager


class QueueFull(Exception):
    """The queue holds too many images to take this request now."""


class Closed(Exception):
    """The batcher is shutting down and takes no new requests."""


class Ticket:
    """A request on its way to ``submit`` (``Batcher.coming``)."""
    __slots__ = ("submitted",)

    def __init__(self):
        self.submitted = False


class Batcher:
    """``submit(items)`` returns one ``Future`` per item, resolved with ``fn(batch)[i]``.

    ``workers`` threads each run forward passes; ``on_batch(size, seconds)`` is called after each;
    ``announced``: wait for more items only while a request is ``coming()``."""

    def __init__(self, fn, max_batch_size: int = 32, max_delay: float = 0.005, queue_size: int = 256,
                 workers: int = 1, on_batch=None, announced: bool = False):
        self.fn, self.max_batch_size, self.max_delay = fn, max_batch_size, max_delay
        self.queue_size, self.on_batch, self.announced = queue_size, on_batch, announced
        self._queue: deque = deque()          # (arrival time, item, future)
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0                     # images in forward passes now
        self._coming = 0                      # requests announced and not yet submitted
        self._threads = [threading.Thread(target=self._work, name=f"densekit-batcher-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Images waiting for a forward pass."""
        return len(self._queue)

    @property
    def incoming(self) -> int:
        """Requests announced with ``coming()`` and not yet submitted."""
        return self._coming

    @property
    def in_flight(self) -> int:
        """Images waiting or in a forward pass now."""
        with self._cond:
            return len(self._queue) + self._running

    @contextmanager
    def coming(self):
        """The request handled in this block counts as on its way until it is submitted with the
        ``Ticket`` this yields (or the block ends): a forming batch waits for it, up to ``max_delay``."""
        ticket = Ticket()
        with self._cond:
            self._coming += 1
        try:
            yield ticket
        finally:
            if not ticket.submitted:
                with self._cond:
                    self._coming -= 1
                    self._cond.notify_all()

    def submit(self, items, ticket: Ticket | None = None) -> list[Future]:
        futures = [Future() for _ in items]
        with self._cond:
            if ticket is not None and not ticket.submitted:   # no longer on its way, queued or refused
                ticket.submitted = True
                self._coming -= 1
                self._cond.notify_all()
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._queue) + len(items) > self.queue_size:
                raise QueueFull(f"{len(self._queue)} images are waiting (queue size {self.queue_size})")
            now = time.monotonic()
            self._queue.extend((now, item, fut) for item, fut in zip(items, futures))
            self._cond.notify_all()
        return futures

    def _take(self) -> list | None:
        """The next batch, or None once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0][0] + self.max_delay
            while len(self._queue) < self.max_batch_size and not self._closed \
                    and not (self.announced and self._coming == 0):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            # A request that went away (its client disconnected) cancelled its futures: skip its images.
            batch = [entry for entry in batch if entry[2].set_running_or_notify_cancel()]
            self._running += len(batch)
            return batch

    def _work(self):
        while (batch := self._take()) is not None:
            if not batch:
                continue
            start = time.perf_counter()
            try:
                out = self.fn([item for _, item, _ in batch])
            except BaseException as err:  # answered to each request; the worker lives on
                for _, _, fut in batch:
                    fut.set_exception(err)
            else:
                for i, (_, _, fut) in enumerate(batch):
                    fut.set_result(out[i])
            finally:
                with self._cond:
                    self._running -= len(batch)
                    self._cond.notify_all()
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - start)

    def close(self, timeout: float | None = None) -> bool:
        """Take no more requests, answer the queued ones, stop the workers; True if they stopped in time."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
