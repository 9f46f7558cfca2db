"""The optional extras (pyproject.toml's ``[project.optional-dependencies]``) and the command that
installs one where the user is: densekit is not on PyPI, so ``pip install 'densekit[serve]'``
cannot work; from a clone it is ``pip install -e '.[serve]'`` (or ``scripts/setup.sh serve`` for the
clone's own ``.venv``), and elsewhere the extra's packages by name."""
from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

from .errors import DensekitError


def clone_root() -> Path | None:
    """The checkout densekit runs from (``src/densekit`` inside a folder with pyproject.toml), or None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "scripts" / "setup.sh").is_file() else None


def extra_packages(extra: str) -> list[str]:
    """The requirements of ``extra`` as installed metadata declares them (markers other than the extra dropped)."""
    try:
        requires = importlib.metadata.requires("densekit") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";")[0].strip() for r in requires if marker.search(r)]


def install_hint(extra: str) -> str:
    """A command that installs ``extra`` into the Python running densekit, from where the user is."""
    root = clone_root()
    if root is None:
        packages = extra_packages(extra)
        return "pip install " + " ".join(shlex.quote(p) for p in packages) if packages else \
            f"install densekit's {extra} extra from the clone or wheel densekit came from"
    where = "." if Path.cwd().resolve() == root else str(root)
    if Path(sys.prefix).resolve() == (root / ".venv").resolve():
        return f"{where}/scripts/setup.sh {extra}" if where != "." else f"scripts/setup.sh {extra}"
    return f"pip install -e '{where}[{extra}]'"


def missing_extra(what: str, extra: str, module: str | None = None) -> DensekitError:
    """The one-line error for a feature whose extra is not installed."""
    lacking = f" ({module} is missing)" if module else ""
    return DensekitError(f"{what} needs the {extra} extra{lacking}: {install_hint(extra)}")
