"""Shared fixtures and the tiny model every training test uses. Each test process uses one thread:
the suite runs on 2 workers (pytest-xdist) and oversubscribed OpenMP threads are an order of
magnitude slower than one thread each."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # inherited by CLI subprocesses
os.environ.setdefault("DENSEKIT_OFFLINE", "1")  # tests never reach the internet

import pytest  # noqa: E402
import torch  # noqa: E402

from densekit.engine.callbacks import Callback  # noqa: E402

torch.set_num_threads(1)

# A 2-block DenseNet-BC (densenet-bc-40-k12 with block_config [3, 3], k = 8): a bottleneck to fold,
# seconds to train, still learns the 8x8 digits. ``TINY`` for the API, ``TINY_FLAGS`` for the CLI.
TINY = {"block_config": [3, 3], "growth_rate": 8}
TINY_FLAGS = ["--model", "densenet-bc-40-k12", "--model-arg", "block_config=[3,3]", "--model-arg", "growth_rate=8"]


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """The tiny DenseNet-BC trained 6 epochs on digits (its test split: 360 images; no flips, so no
    test-time augmentation), once per test process: a ``densekit.train`` Run. Shared by the CLI,
    runtime and serving tests: read it, export beside it, never train it further."""
    import densekit
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=6,
                               batch_size=32, lr=0.1, val_split=200, workers=0,
                               out=str(tmp_path_factory.mktemp("digits")), name="run", tensorboard=False, plots=False)
    return densekit.train(cfg, verbose=False)


@pytest.fixture(scope="session")
def digits_onnx(digits_run, tmp_path_factory):
    """``digits_run`` exported to ONNX for any batch size (not self-checked: export's own tests do that)."""
    import densekit
    path = tmp_path_factory.mktemp("digits-export") / "run.onnx"
    densekit.export(digits_run.dir, "onnx", out=path, dynamic_batch=True, verify=False)
    return path


# -- several labels per image -------------------------------------------------------------------------
# scikit-learn's digits with four yes/no questions per image (docs/multilabel.md): real images whose
# labels co-occur and overlap, so a model must answer each question on its own. Registered as the
# source "digits-multilabel" for in-process training; a few entries are unknown (NaN), as in CheXpert.
MULTILABEL_CLASSES = ["even", "above-4", "has-loop", "straight"]


def digits_multilabel(split: str):
    import numpy as np

    from densekit.data.digits import load_digits
    from densekit.data.dataset import TensorImageDataset
    ds = load_digits(split)
    d = ds.labels.numpy()
    rows = np.stack([d % 2 == 0, d > 4, np.isin(d, [0, 6, 8, 9]), np.isin(d, [1, 4, 7])], 1).astype(np.float32)
    rows[np.random.default_rng(1).random(rows.shape) < 0.03] = np.nan   # unknown entries
    return TensorImageDataset(ds.images, torch.from_numpy(rows), MULTILABEL_CLASSES, name="digits-multilabel",
                              task="multilabel")


def _register_digits_multilabel():
    from densekit.data import register_source
    register_source("digits-multilabel", "digits with four yes/no labels per image (tests)")(
        lambda split, data_dir, **_: digits_multilabel(split))


_register_digits_multilabel()


# Prepended to the code of a subprocess that must run as where PyTorch is not installed.
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, _NoTorch())
"""


def without_torch(code: str, timeout: float = 120) -> "subprocess.CompletedProcess":
    """``code`` run by a fresh interpreter in which ``import torch`` fails."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=timeout)


class StopAfter(Callback):
    """A training callback that stops the run after epoch ``epochs``, as a kill between epochs would
    (the run can then be resumed)."""

    def __init__(self, epochs: int = 1):
        self.epochs = epochs

    def on_epoch_end(self, ctx, record):
        if record["epoch"] == self.epochs:
            ctx.stop = True

