"""Python-2 pickles of numpy arrays (CIFAR's "python version", Nielsen's ``mnist.pkl.gz``), read safely.

``pickle.load`` calls whatever callable a file names, so a data file could run code. These files
only ever need numpy to rebuild arrays (``_reconstruct``, ``ndarray``, ``dtype``), so the
unpickler resolves exactly those globals and refuses every other one. Python 2 ``str`` objects
(dict keys, array buffers) are decoded as latin-1, which numpy documents as the byte-exact choice.
"""
from __future__ import annotations

import gzip
import importlib
import io
import pickle
import pickletools
import zlib
from pathlib import Path

import numpy as np

from ..errors import DensekitError
from .limits import MAX_PICKLE_BYTES, read_at_most

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype")}


def _reconstruct():
    # numpy 2 moved the module to numpy._core; files written by either name the one they knew.
    name = "numpy.core.multiarray" if np.__version__.startswith("1.") else "numpy._core.multiarray"
    return importlib.import_module(name)._reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no data file needs")
        return _reconstruct() if name == "_reconstruct" else getattr(np, name)


def _check_claims(raw: bytes):
    """Refuse a pickle whose opcodes claim more memory than the file could honestly need.

    The unpickler allocates a string's claimed length before reading it, and grows its memo table
    to the largest index a PUT names; walking the opcodes first (without building anything) proves
    every length fits in the file and every memo index is below the file's size (a pickler numbers
    them 0, 1, 2, ...), so unpickling never allocates more than a small multiple of the file."""
    for op, arg, _ in pickletools.genops(raw):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) < len(raw):
            raise ValueError(f"memo index {arg} of a {len(raw)}-byte pickle")


def load_pickle(path: Path):
    """Load a (possibly gzipped) Python-2 pickle that holds only numpy arrays, lists, dicts and strings."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = read_at_most(f, MAX_PICKLE_BYTES + 1)
        if len(raw) > MAX_PICKLE_BYTES:
            raise DensekitError(f"{path}: more than densekit's limit of {MAX_PICKLE_BYTES:,} bytes of pickle; "
                                "the file is damaged or not the original, delete it and fetch it again")
        _check_claims(raw)
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, RecursionError, zlib.error) as err:
        raise DensekitError(f"{path}: not a readable data pickle ({err}); the file is damaged or not the "
                            "original, delete it and fetch it again") from None
