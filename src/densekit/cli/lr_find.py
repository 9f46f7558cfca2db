"""`densekit lr-find [train flags]`: the LR range test for the run those flags describe.

Takes every flag of `densekit train` (same model, data, augmentation, optimizer, batch size), so
the suggestion printed can be passed straight back as `densekit train ... --lr SUGGESTION`.
Epochs, time budget and the LR schedule do not apply to the sweep. No run folder is left unless
--keep or --out is given.
"""
from __future__ import annotations

import argparse

from ..errors import DensekitError
from .common import add_json_flag, print_json
from .train import add_config_flags, config_from_args


def add_parser(sub):
    p = sub.add_parser("lr-find", help="sweep the learning rate exponentially and suggest one for --lr",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="a named recipe shipped with densekit (see `densekit recipes`)")
    p.add_argument("--config", help="a YAML file of config fields")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first LR of the sweep (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last LR of the sweep (default 10)")
    p.add_argument("--num-iter", type=int, default=100, help="optimizer steps of the sweep (default 100)")
    p.add_argument("--diverge", type=float, default=4.0,
                   help="stop when the smoothed loss exceeds this many times its minimum (default 4)")
    p.add_argument("--plot", default="lr_find.png", metavar="PNG",
                   help="where to write loss against LR (default lr_find.png; in the run folder with --keep)")
    p.add_argument("--keep", action="store_true",
                   help="keep a run folder (OUT/NAME) with config.yaml, lr_find.json and the plot")
    add_json_flag(p, "the sweep's result")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.lr_find import lr_find
    if args.lr is not None:
        raise DensekitError("lr-find sweeps the learning rate itself: drop --lr (set the range with "
                            "--start-lr and --end-lr)")
    cfg = config_from_args(args)
    result = lr_find(cfg, start_lr=args.start_lr, end_lr=args.end_lr, num_iter=args.num_iter,
                     diverge=args.diverge, plot=args.plot, keep=args.keep or args.out is not None,
                     verbose=not (args.quiet or args.json))
    if args.json:
        print_json(result.to_dict())
        return 0
    stop = "stopped early: the loss diverged" if result.stopped_early else "reached the end"
    print(f"suggested --lr {result.suggestion:.3g}  (minimum / 10; steepest descent at {result.steepest:.3g}; "
          f"{len(result.lrs)} steps from {result.start_lr:g}, {stop} at {result.lrs[-1]:.3g})  plot {result.plot}"
          + (f"  run folder {result.run_dir}" if result.run_dir else ""))
    return 0
