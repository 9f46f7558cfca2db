"""The dynamic batcher of `densekit serve` on its own: batch sizes, the delay, the bounded queue,
the drain on close and parallel workers, with a plain function in place of the model."""
import threading
import time

import pytest

from densekit.serve.batcher import Batcher, Closed, QueueFull


def recording(sizes, gate=None):
    def fn(batch):
        if gate is not None:
            gate.wait(10)
        sizes.append(len(batch))
        return [x * 10 for x in batch]
    return fn


def test_waiting_items_are_gathered_up_to_the_max_batch_size():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=4, max_delay=0.2, queue_size=100)
    futures = b.submit(list(range(10)))
    assert [f.result(10) for f in futures] == [x * 10 for x in range(10)]
    assert sizes == [4, 4, 2]
    assert b.close(5)


def test_a_lone_item_waits_at_most_the_max_delay():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=8, max_delay=0.3, queue_size=100)
    start = time.monotonic()
    assert b.submit([7])[0].result(10) == 70
    assert 0.3 <= time.monotonic() - start < 5 and sizes == [1]
    b.close(5)


def test_announced_a_lone_request_does_not_wait_for_company():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=8, max_delay=5, queue_size=100, announced=True)
    start = time.monotonic()
    with b.coming() as ticket:
        futures = b.submit([7], ticket)
    assert futures[0].result(10) == 70 and time.monotonic() - start < 2 and sizes == [1]
    assert b.incoming == 0
    b.close(5)


def test_announced_a_batch_waits_for_a_request_on_its_way_then_takes_it():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=8, max_delay=5, queue_size=100, announced=True)
    with b.coming() as late:                       # being read or decoded: the batch waits for it
        with b.coming() as ticket:
            first = b.submit([1], ticket)
        time.sleep(0.3)
        assert b.depth == 1 and b.incoming == 1 and sizes == []
        second = b.submit([2, 3], late)
    assert [f.result(10) for f in first + second] == [10, 20, 30] and sizes == [3]
    b.close(5)


def test_announced_a_request_that_fails_before_submitting_stops_the_wait():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=8, max_delay=30, queue_size=100, announced=True)
    with pytest.raises(ValueError):
        with b.coming():
            with b.coming() as ticket:
                first = b.submit([4], ticket)
            time.sleep(0.2)
            raise ValueError("the image could not be decoded")
    assert first[0].result(5) == 40 and sizes == [1] and b.incoming == 0
    b.close(5)


def test_max_batch_size_1_never_batches():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=1, max_delay=0.5, queue_size=100)
    start = time.monotonic()
    [f.result(10) for f in b.submit([1, 2, 3])]
    assert sizes == [1, 1, 1] and time.monotonic() - start < 0.5   # a full batch of 1 never waits
    b.close(5)


def test_a_full_queue_refuses_a_whole_request_and_forward_passes_do_not_count():
    gate, sizes = threading.Event(), []
    b = Batcher(recording(sizes, gate), max_batch_size=1, max_delay=0, queue_size=3)
    first = b.submit([1])
    deadline = time.monotonic() + 5
    while b.depth and time.monotonic() < deadline:   # the worker took it and is blocked in fn
        time.sleep(0.01)
    assert b.depth == 0 and b.in_flight == 1
    waiting = b.submit([2, 3, 4])
    with pytest.raises(QueueFull):
        b.submit([5])
    assert b.depth == 3                               # nothing of the refused request went in
    gate.set()
    assert [f.result(10) for f in first + waiting] == [10, 20, 30, 40]
    b.close(5)


def test_close_answers_everything_queued_at_once_then_refuses():
    sizes = []
    b = Batcher(recording(sizes), max_batch_size=64, max_delay=30, queue_size=100)
    futures = b.submit([1, 2, 3])
    start = time.monotonic()
    assert b.close(10)                                # no waiting out the 30 s delay
    assert time.monotonic() - start < 5
    assert [f.result(0) for f in futures] == [10, 20, 30]
    with pytest.raises(Closed):
        b.submit([4])


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_forward_passes_at_the_same_time(workers):
    both = threading.Barrier(2, timeout=1.0)          # passes only when two calls are inside fn together

    def fn(batch):
        both.wait()
        return batch
    b = Batcher(fn, max_batch_size=1, max_delay=0, queue_size=10, workers=workers)
    futures = b.submit(["a"]) + b.submit(["b"])
    if workers == 2:
        assert [f.result(10) for f in futures] == ["a", "b"]
    else:
        with pytest.raises(threading.BrokenBarrierError):
            futures[0].result(10)
    b.close(5)


def test_an_error_reaches_every_request_of_its_batch_and_the_worker_lives_on():
    calls = []

    def fn(batch):
        calls.append(list(batch))
        if "bad" in batch:
            raise RuntimeError("boom")
        return batch
    b = Batcher(fn, max_batch_size=2, max_delay=1, queue_size=10)
    failed = b.submit(["ok", "bad"])
    for f in failed:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(10)
    assert b.submit(["fine"])[0].result(10) == "fine"
    b.close(5)


def test_a_cancelled_request_is_left_out_of_the_batch():
    gate, sizes = threading.Event(), []
    b = Batcher(recording(sizes, gate), max_batch_size=1, max_delay=0, queue_size=10)
    busy = b.submit([1])
    while b.depth:
        time.sleep(0.01)
    gone, kept = b.submit([2]) + b.submit([3])
    assert gone.cancel()                              # e.g. its client disconnected
    gate.set()
    assert busy[0].result(10) == 10 and kept.result(10) == 30
    assert sizes == [1, 1]
    b.close(5)
