"""`densekit calibrate RUN_OR_CHECKPOINT`: refit temperature and abstention thresholds without retraining."""
from __future__ import annotations

from .common import DEVICE_HELP, RUN_HELP, add_json_flag, print_json


def add_parser(sub):
    p = sub.add_parser("calibrate", help="refit a run's temperature and abstention thresholds on a split, "
                                         "without retraining")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help=RUN_HELP)
    p.add_argument("--dataset", help="default: the dataset the model was trained on; e.g. folder:PATH of images "
                                     "from where it is deployed, one sub-folder per class")
    p.add_argument("--split", default="val", help="default val (the split training carved out when the source "
                                                  "has none); never fit on the split you report")
    p.add_argument("--data-dir", help="where the built-in sets' files are (default: $DENSEKIT_DATA, "
                   "else ~/.cache/densekit)")
    p.add_argument("--coverage", type=float, help="store the confidence threshold keeping this fraction of "
                                                  "the images (default: the run's own --coverage, if any)")
    p.add_argument("--batch-size", type=int, default=512, help="images per forward pass (default 512)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_json_flag(p, "the fitted temperature, thresholds and figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.calibration import calibrate, summary_line
    cal = calibrate(args.checkpoint, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
                    coverage=args.coverage, device=args.device, batch_size=args.batch_size)
    if args.json:
        print_json({k: v for k, v in cal.items() if not k.startswith("reliability")})
    else:
        print(f"{summary_line(cal)}; stored in {cal['checkpoint']}")
    return 0
