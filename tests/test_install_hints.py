"""The quick start installs everything the README uses, and every install hint names a command
that works where the user is (densekit is not on PyPI: `pip install 'densekit[serve]'` cannot)."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from densekit.extras import clone_root, install_hint

ROOT = Path(__file__).resolve().parents[1]


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def expand(names: list[str], table: dict) -> set[str]:
    """The packages of these extras, following `densekit[a,b]` references."""
    out = set()
    for name in names:
        for req in table[name]:
            inner = re.fullmatch(r"densekit\[(.+)\]", req)
            out |= expand(inner[1].split(","), table) if inner else {req}
    return out


def test_the_quick_start_installs_every_extra_the_readme_uses():
    line = next(x for x in (ROOT / "scripts" / "quickstart.sh").read_text().splitlines()
                if x.startswith("scripts/setup.sh"))
    installed = expand(line.split()[1].split(","), extras())
    assert expand(["mnist", "export", "serve"], extras()) <= installed
    # the README's quick start stays two commands
    assert "source .venv/bin/activate" in (ROOT / "scripts" / "quickstart.sh").read_text()   # the way on
    quick = (ROOT / "README.md").read_text().split("## Quick start")[1].split("```bash")[1].split("```")[0]
    assert [x.split()[0] for x in quick.strip().splitlines()] == ["scripts/quickstart.sh", "scripts/test.sh"]


def test_no_hint_names_a_package_index_densekit_is_not_on():
    texts = [p for p in [*(ROOT / "src").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
             if p.name != "extras.py"]   # extras.py explains why in its docstring
    bad = [f"{p}: {m[0]}" for p in texts for m in re.finditer(r"pip install[^\n`]*?densekit\b(?![-./])[^\n`]*",
                                                                 p.read_text()) if "--no-deps" not in m[0]]
    assert not bad, bad


def test_the_hint_from_a_clone_is_an_editable_install_of_it(tmp_path, monkeypatch):
    assert clone_root() == ROOT
    monkeypatch.chdir(ROOT)
    assert install_hint("serve") in ("pip install -e '.[serve]'", "scripts/setup.sh serve")
    monkeypatch.chdir(tmp_path)
    assert install_hint("export") in (f"pip install -e '{ROOT}[export]'", f"{ROOT}/scripts/setup.sh export")
    assert {"serve", "export", "runtime", "all"} <= set(extras())


def test_a_missing_extra_is_one_line_with_that_command(tmp_path):
    # uvicorn made unimportable: what a user without the serve extra sees
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from densekit.cli import main\nsys.exit(main(['serve', 'runs/none']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("densekit: error: densekit serve needs the serve extra (uvicorn is missing): ")
    assert f"-e '{ROOT}[serve]'" in lines[0] or f"{ROOT}/scripts/setup.sh serve" in lines[0]
