"""`densekit serve RUN_OR_EXPORT`: an HTTP prediction service with dynamic batching (docs/serving.md)."""
from __future__ import annotations

import argparse

from .common import DEVICE_HELP, add_abstention_flags, add_json_flag


def add_parser(sub):
    p = sub.add_parser("serve", help="serve a run, checkpoint or .onnx export over HTTP (FastAPI + uvicorn)")
    p.add_argument("source", metavar="RUN_OR_EXPORT", help="a run folder, a checkpoint file, an .onnx or an OpenVINO .xml export")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000); 0 picks a free one (printed at start)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"], default="auto",
                   help="torch (a run or checkpoint), onnx (an .onnx export) or openvino (an .xml export; "
                   "neither needs PyTorch); auto: by the file")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + "; an .onnx or .xml export runs on the CPU")
    p.add_argument("--tta", choices=["none", "flip"], help="test-time augmentation; default: the model's own")
    # Defaults (None here) live in one place, densekit.serve.create_app / serve; --help names them.
    p.add_argument("--max-batch-size", type=int, help="images per forward pass (32); 1: no batching")
    p.add_argument("--max-delay-ms", type=float,
                   help="how long a forward pass waits after its first image for more, while other requests are "
                   "still being read or decoded (5)")
    p.add_argument("--workers", type=int,
                   help="inference threads running forward passes at once, the cores shared among them (1)")
    p.add_argument("--threads", type=int,
                   help="intra-op threads of each forward pass (the cores shared among the workers)")
    p.add_argument("--forward-process", action=argparse.BooleanOptionalAction,
                   help="run forward passes in a process of their own (default: for the torch backend, whose "
                   "passes would otherwise contend with the HTTP work for the GIL; --no-forward-process: in the "
                   "server's process)")
    p.add_argument("--queue-size", type=int, help="images that may wait; beyond it requests get 503 (256)")
    p.add_argument("--max-bytes", type=int, help="largest request body in bytes (20,971,520 = 20 MiB)")
    p.add_argument("--max-files", type=int, help="most images in one request (64)")
    p.add_argument("--max-pixels", type=int, help="largest image, width x height (25,000,000)")
    p.add_argument("--max-request-pixels", type=int,
                   help="most pixels of all images of one request together (100,000,000)")
    p.add_argument("--decoders", type=int, help="images over 1 megapixel decoded at once: peak decoding memory "
                   "is about this x --max-pixels x 16 bytes (1)")
    p.add_argument("--body-timeout", type=float, help="seconds a client has to send its whole body (30)")
    p.add_argument("--max-header-bytes", type=int, help="largest request line and headers, in bytes (32 KiB)")
    p.add_argument("--max-headers", type=int, help="most header fields in one request (100)")
    p.add_argument("--header-timeout", type=float, help="seconds a client has to send its headers (10)")
    p.add_argument("--drain-timeout", type=float, help="seconds SIGTERM waits for requests in flight (30)")
    add_abstention_flags(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level on stderr (default info)")
    add_json_flag(p, "the address and model", when="once the server listens")
    p.set_defaults(func=run)


OPTIONAL = ("max_batch_size", "max_delay_ms", "workers", "threads", "queue_size", "max_bytes", "max_files",
            "max_pixels", "max_request_pixels", "decoders", "body_timeout", "drain_timeout", "max_header_bytes",
            "max_headers", "header_timeout", "forward_process")


def run(args) -> int:
    from ..serve import serve
    given = {name: getattr(args, name) for name in OPTIONAL if getattr(args, name) is not None}
    serve(args.source, host=args.host, port=args.port, log_level=args.log_level, backend=args.backend,
          device=args.device, tta=args.tta, json_line=args.json, reject_below=args.reject_below,
          reject_ood=args.reject_ood, **given)
    return 0
