"""densekit's malloc tuning: freed tensor memory is reused, not faulted in again every step."""
import json
import os
import subprocess
import sys

import pytest

# A training step's pattern in miniature: allocate a few 4 MiB tensors, touch them, free them all,
# again and again; print the page faults of the rounds after the first two.
_PROBE = """
import json, resource, sys
import densekit, torch
from densekit.allocator import keep_freed_memory

tuned = keep_freed_memory() if sys.argv[1] == "tune" else False

def rounds(n):
    for _ in range(n):
        tensors = [torch.ones(1 << 20) for _ in range(10)]
        del tensors

rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(8)
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(malloc: str, mode: str = "tune", **env) -> dict:
    env = dict(os.environ, DENSEKIT_MALLOC=malloc, **env)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_tensors_are_reused_without_new_page_faults():
    # The control: glibc at its static default (mmap above 128 KiB, densekit's tuning off) maps
    # every 4 MiB tensor afresh and unmaps it when freed. (Left to adjust itself, glibc may or may
    # not keep the blocks, depending on what the process freed before: not a fixed baseline.)
    control = _probe("system", MALLOC_MMAP_THRESHOLD_="131072")
    tuned = _probe("")
    assert tuned["tuned"] and not control["tuned"]
    # A round touches 40 MiB, 10,240 pages: the control faults them in again in every one of the
    # 8 rounds; tuned, the heap keeps them, and all 8 rounds together fault in less than one round's worth.
    assert control["faults"] > 7 * 10_240
    assert tuned["faults"] < 10_240


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_importing_densekit_leaves_the_host_processs_allocator_alone():
    # glibc at a static 128 KiB mmap threshold; had `import densekit` tuned it, the heap would keep the blocks
    untouched = _probe("", mode="import", MALLOC_MMAP_THRESHOLD_="131072")
    assert not untouched["tuned"] and untouched["faults"] > 7 * 10_240
