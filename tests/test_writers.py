"""Every file densekit writes, at every kind of bad target (issue 22): a folder where a file goes, a
path under a file, a missing parent (created), a wrong suffix for the format, a read-only file
system and a full one (small tmpfs mounts in a private mount namespace, as test_reliability does).
Each refusal is one line on stderr with exit 1, and no partial file is ever left."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densekit.cli import main


@pytest.fixture(scope="module")
def tiny(digits_run, tmp_path_factory):
    image = tmp_path_factory.mktemp("image") / "digit.png"
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(image)
    return digits_run.dir, image


# name: (the command with the target as T, whether the target is a file (with its suffix) or a folder)
WRITERS = {
    "export onnx": (["export", "RUN", "--format", "onnx", "--no-verify", "--out", "T"], ".onnx"),
    "export torchscript": (["export", "RUN", "--format", "torchscript", "--no-verify", "--out", "T"], ".torchscript"),
    "export safetensors": (["export", "RUN", "--format", "safetensors", "--no-verify", "--out", "T"], ".safetensors"),
    "report": (["report", "RUN", "--out", "T"], ".html"),
    "predict --csv": (["predict", "RUN", "IMAGE", "--csv", "T"], ".csv"),
    "data show": (["data", "show", "digits", "--out", "T"], ".png"),
    "explain --out": (["explain", "RUN", "IMAGE", "--out", "T"], None),
    "data import": (["data", "import", "digits", "--out", "T", "--workers", "0"], None),
}


def argv(name, tiny, target) -> list[str]:
    run, image = tiny
    return [{"RUN": str(run), "IMAGE": str(image), "T": str(target)}.get(a, a) for a in WRITERS[name][0]]


def one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("densekit: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", WRITERS)
def test_a_folder_a_file_in_the_way_and_a_missing_parent(name, tiny, tmp_path, capsys):
    suffix = WRITERS[name][1]
    (tmp_path / "a-file").write_text("keep me")
    if suffix:   # a file writer given a folder
        (tmp_path / "folder").mkdir()
        assert "is a folder" in one_line_error(capsys, main(argv(name, tiny, tmp_path / "folder")))
    else:        # a folder writer given a file
        assert "a-file" in one_line_error(capsys, main(argv(name, tiny, tmp_path / "a-file")))
    err = one_line_error(capsys, main(argv(name, tiny, tmp_path / "a-file" / f"out{suffix or ''}")))
    assert "is a file, not a folder" in err
    assert (tmp_path / "a-file").read_text() == "keep me"
    target = tmp_path / "new" / "deeper" / f"out{suffix or ''}"
    assert main(argv(name, tiny, target)) in (0, 1) and target.exists()     # created; predict exits 0
    capsys.readouterr()
    assert not [f for f in files_under(tmp_path) if f.endswith(".tmp")]


@pytest.mark.parametrize("name, wrong", [("export onnx", "model.pt"), ("export torchscript", "model.onnx"),
                                         ("export safetensors", "model"), ("report", "report.pdf"),
                                         ("data show", "grid.txt")])
def test_a_suffix_that_contradicts_the_format_is_refused_before_writing(name, wrong, tiny, tmp_path, capsys):
    err = one_line_error(capsys, main(argv(name, tiny, tmp_path / wrong)))
    assert WRITERS[name][1] in err and files_under(tmp_path) == []


INSIDE = """
import contextlib, io, json, os, sys
from pathlib import Path
from densekit.cli import main
from densekit.data.download import download
cases, out = json.loads(sys.argv[1]), {}
for key, args in cases.items():
    target = Path(args[args.index("--out") + 1] if "--out" in args else args[args.index("--csv") + 1])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(args)
    folder = target.parent
    out[key] = [rc, err.getvalue(), sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name != "fill")]
src = Path(sys.argv[2])
for where in ("ro", "full"):   # the download cache: the file appears only complete and verified
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            download([src.as_uri()], Path(os.environ["MNT"]) / where / "cache" / "data.bin")
            rc = 0
        except Exception as e:
            rc, line = 1, f"{type(e).__name__}: {e}"
    out[f"download|{where}"] = [rc, line, sorted(p.name for p in (Path(os.environ["MNT"]) / where).rglob("*")
                                               if p.is_file() and p.name != "fill")]
print(json.dumps(out))
"""


def test_read_only_and_full_targets_give_one_line_and_leave_no_partial_file(tiny, tmp_path):
    mnt = tmp_path / "mnt"
    (mnt / "ro").mkdir(parents=True)
    (mnt / "full").mkdir()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300_000))
    cases = {f"{name}|{where}": argv(name, tiny, mnt / where / f"out{suffix or ''}")
             for name, (_, suffix) in WRITERS.items() for where in ("ro", "full")}
    script = (f"mount -t tmpfs -o size=4m tmpfs {mnt}/ro && mount -o remount,ro {mnt}/ro && "
              f"mount -t tmpfs -o size=256k tmpfs {mnt}/full && "
              f"(dd if=/dev/zero of={mnt}/full/fill bs=4k 2>/dev/null; true) && "
              f"{sys.executable} -c '{INSIDE}' '{json.dumps(cases)}' {blob}")
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "MNT": str(mnt)})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for key, (rc, err, left) in results.items():
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 1 and len(lines) == 1, (key, err)
        words = "read-only" if key.endswith("|ro") else "the disk is full"
        assert words in lines[0] and "Traceback" not in err, (key, err)
        assert left == [], (key, left)   # no file written, no temporary file left (empty folders may be)
