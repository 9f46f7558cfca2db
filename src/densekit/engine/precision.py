"""Device and precision policy: the fastest numerically safe defaults for the device at hand.

bf16 keeps float32's exponent range, so it needs no loss scaling; it is only used where the
hardware computes it natively (CUDA with bf16 support; CPUs with AVX512-BF16 or AMX), because
emulated bf16 on older CPUs is slower than float32.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch


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
