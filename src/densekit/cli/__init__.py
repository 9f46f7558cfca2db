"""The ``densekit`` command: a thin layer over the Python API, one module per verb group.

Each module in ``COMMANDS`` has ``add_parser(subparsers)``, which registers its verbs and sets
``func`` on them; ``func(args)`` returns an exit code. Errors a user can cause raise
``DensekitError`` and are printed here as one line.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import DensekitError

# Verb modules, in the order `densekit --help` lists them.
COMMANDS = ["train", "evaluate", "calibrate", "predict", "explain", "export", "serve", "models", "data", "summary",
            "compare", "recipes", "runs", "report", "sweep", "lr-find", "bench", "verify"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="densekit", description="Train, evaluate, predict with and "
                                     "benchmark DenseNets (Huang et al., arXiv 1608.06993).")
    parser.add_argument("--version", action="version", version=f"densekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name.replace('-', '_')}", __name__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..allocator import keep_freed_memory
    keep_freed_memory()   # the command owns its process: glibc keeps freed tensor memory (allocator.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # what `train --nproc` hands to torchrun
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DensekitError as err:
        print(f"densekit: error: {_where(err, getattr(args, 'origins', {}))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("densekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _where(err: DensekitError, origins: dict) -> DensekitError:
    """A refused setting that came from a YAML file (``--config``, a recipe) names that file and key."""
    from ..config import SettingError
    if isinstance(err, SettingError) and err.field in origins:
        return err.origin(origins[err.field])
    if "model_args" in origins and str(err).startswith("--model-arg "):   # models/registry.py's check
        return DensekitError(f"{origins['model_args']}: model_args: {str(err)[len('--model-arg '):]}")
    return err


def _exit_at_once(signum, frame):
    # Ctrl-C where nothing is being saved (loading data, printing results, interpreter shutdown):
    # exit at once, without a KeyboardInterrupt traceback; training installs its own handler meanwhile.
    print("\ndensekit: interrupted", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def console_main() -> int:
    """The `densekit` program (the console script and `python -m densekit`): main() in a process it owns."""
    import signal
    signal.signal(signal.SIGINT, _exit_at_once)
    return main()


if __name__ == "__main__":
    sys.exit(main())
