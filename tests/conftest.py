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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A plain CNN trained for one epoch on digits (seconds): for tests of what reads, writes or serves a run."""
    import densekit
    cfg = densekit.TrainConfig(model="plain-cnn", dataset="digits", epochs=1, batch_size=64,
                               out=str(tmp_path_factory.mktemp("tiny") / "runs"), name="tiny", workers=0,
                               tensorboard=False, plots=False, val_split=0)
    return densekit.train(cfg, verbose=False)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    """``tiny_run`` exported to ONNX for any batch size (not self-checked: export's own tests do that)."""
    import densekit
    path = tmp_path_factory.mktemp("tiny-export") / "tiny.onnx"
    densekit.export(tiny_run.dir, "onnx", out=path, dynamic_batch=True, verify=False)
    return path
