"""Shared fixtures. Each test process uses one thread: the suite runs on 2 workers (pytest-xdist)
and oversubscribed OpenMP threads are an order of magnitude slower than one thread each."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # inherited by CLI subprocesses
os.environ.setdefault("DENSEKIT_OFFLINE", "1")  # tests never reach the internet

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"
