"""Fuzz densekit's file readers for as long as asked, at random, with the suite's own strategies.

    python benchmarks/fuzz_readers.py --minutes 10            # every target in turn
    python benchmarks/fuzz_readers.py --minutes 2 --only png tfrecord

tests/test_fuzz_readers.py runs the same targets (tests/fuzzing.py) bounded and derandomized for
CI; this runs them in rounds of ``--examples`` random examples per target until the time is up,
and prints per target the examples run and the first failure (a reader raising anything but a
one-line DensekitError naming the file, or allocating beyond the memory cap). Exit status 1 when
any target failed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from fuzzing import TARGETS, check  # noqa: E402


def fuzz_round(name: str, examples: int, folder: Path) -> tuple[int, str | None]:
    """(examples run, the first failure's summary or None) of one round on target ``name``."""
    target, ran = TARGETS[name], [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(target.strategy())
    def read(data):
        ran[0] += 1
        check(target, folder, data)

    try:
        read()
    except Exception as err:  # the shrunk failing example: report it, keep fuzzing the others
        frames = traceback.extract_tb(err.__traceback__)
        where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames) if "densekit" in f.filename), "?")
        first_line = (str(err).splitlines() or [""])[0][:200]
        return ran[0], f"{type(err).__name__}: {first_line} (at {where})"
    return ran[0], None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--examples", type=int, default=300, help="random examples per target per round")
    p.add_argument("--only", nargs="*", choices=sorted(TARGETS), help="fuzz only these targets")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # Pillow warns about much of what it then reads or refuses
    names = args.only or sorted(TARGETS)
    ran = dict.fromkeys(names, 0)
    failures: dict[str, str] = {}
    deadline = time.monotonic() + 60 * args.minutes
    with tempfile.TemporaryDirectory(prefix="densekit-fuzz-") as tmp:
        while time.monotonic() < deadline:
            for name in names:
                if name in failures or time.monotonic() >= deadline:
                    continue
                n, failure = fuzz_round(name, args.examples, Path(tmp) / name)
                ran[name] += n
                if failure:
                    failures[name] = failure
            if len(failures) == len(names):
                break
    for name in names:
        print(f"{name:15} {ran[name]:8,} examples  {failures.get(name, 'ok')}")
    print(f"{sum(ran.values()):,} examples in {args.minutes:g} min, {len(failures)} target(s) failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
