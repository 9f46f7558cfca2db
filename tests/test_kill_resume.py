"""A run SIGKILLed at 20+ points covering every write window resumes each time and ends bit for
bit where an uninterrupted run ends (benchmarks/kill_resume.py is the harness and its long,
randomised variant)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import kill_resume as K  # noqa: E402


def test_a_run_killed_at_every_write_window_ends_exactly_as_an_uninterrupted_run(tmp_path):
    reference, events = K.reference(tmp_path, epochs=2)
    points = K.kill_points(events, 20)
    kinds = {(p[0][0], p[0][1] if p[0][0] in ("save", "eval") else "", p[1]) for p in points}
    # the windows the issue names: mid-step, mid-save of last.pt and best.pt, between the saves,
    # during the final validation and the test, during the first save
    assert {("step", "", "at"), ("save", "last", "mid"), ("save", "best", "mid"), ("save", "last", "before"),
            ("eval", "val", "at"), ("eval", "test", "at")} <= kinds
    assert points[0][0][0] != "save" and [p for p in points if p[0][0] == "save"][0] == [["save", "last", 0, 1], "mid"]
    assert len(points) >= 20
    run, kills = K.kill_and_resume(tmp_path, points, epochs=2)
    assert kills == len(points)
    assert K.differences(reference, run) == []
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_count"] == 360 and summary["epochs"] == 2
