"""Property-based fuzzing of every reader of user files (strategies and targets: tests/fuzzing.py).

Bounded for CI: a fixed number of examples per target, derandomized (the same examples every run,
no example database), about a minute in all. ``benchmarks/fuzz_readers.py --minutes N`` runs the
same targets at random for as long as asked.
"""
import pytest
from hypothesis import HealthCheck, given, settings

from fuzzing import TARGETS, check

EXAMPLES = 120


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_damaged_file_gives_one_line_naming_it_or_reads(name, tmp_path):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.strategy())
    def read(data):
        check(target, tmp_path / "case", data)

    read()


def test_the_undamaged_seeds_read_without_error(tmp_path):
    # the fuzzing starts from files the readers accept, so damage is what the examples test
    for name, target in TARGETS.items():
        folder = tmp_path / name
        folder.mkdir()
        target.read(folder, target.seed())
