"""Device and precision policy: the fastest numerically safe defaults for the device at hand.

bf16 keeps float32's exponent range, so it needs no loss scaling; it is only used where the
hardware computes it natively (CUDA with bf16 support; CPUs with AVX512-BF16 or AMX), because
emulated bf16 on older CPUs is slower than float32.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from ..errors import DensekitError


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 instructions (oneDNN then runs bf16 fast)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        # No /proc (macOS, Windows): torch's own probe; it reports AMX but not AVX512-BF16.
        return "AMX" in torch.backends.cpu.get_cpu_capability()


def fast_defaults(device: torch.device | str) -> dict:
    """``{"dtype": autocast dtype or None for float32, "channels_last": bool}`` for ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"dtype": dtype, "channels_last": True}
    if device.type == "cpu":
        # channels_last lets oneDNN skip layout reorders around every convolution, also in float32.
        return {"dtype": torch.bfloat16 if cpu_has_native_bf16() else None, "channels_last": True}
    return {"dtype": None, "channels_last": False}


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """Mixed-precision context for ``device``; a no-op context when ``dtype`` is None (float32)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for a ``--device`` value: ``auto`` is CUDA when torch sees a GPU, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DensekitError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DensekitError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``--precision`` value (None: float32); ``auto`` is the device's fast default."""
    if precision == "auto":
        return fast_defaults(device)["dtype"]
    if precision not in PRECISIONS:
        raise DensekitError(f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return PRECISIONS[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bfloat16"``, ``"float16"`` or ``"float32"``: how run folders and checkpoints record it."""
    return str(dtype or torch.float32).replace("torch.", "")


def dtype_from_name(name: str | None) -> torch.dtype | None:
    """The inverse of ``precision_name`` (None for float32 or an unrecorded precision)."""
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name or "")


def run_precision(dtype_name: str | None, channels_last: bool, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels_last) to run a trained model on ``device``: the precision it recorded
    (``InputSpec.dtype`` / ``channels_last``), or the device's fast defaults when it recorded none
    (``dtype_name`` None) or when the device lacks its reduced precision (then the device's own)."""
    fast = fast_defaults(device)
    if dtype_name is None:
        return fast["dtype"], fast["channels_last"]
    dtype = dtype_from_name(dtype_name)
    if dtype is not None and dtype != fast["dtype"] and not (device.type == "cuda" and dtype == torch.float16):
        dtype = fast["dtype"]
    return dtype, bool(channels_last)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process on ``device``: CUDA's max allocated, or the CPU's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
