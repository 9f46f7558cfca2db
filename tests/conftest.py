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
