"""``densekit serve``: an HTTP prediction service over a run folder, a checkpoint or an ONNX export.

    from densekit.serve import create_app, serve
    app = create_app("runs/NAME")                  # the ASGI app (FastAPI), for any ASGI server
    serve("runs/NAME", port=8000)                  # or run it with uvicorn until SIGTERM

FastAPI and uvicorn do the HTTP; densekit adds the model backends (``backends.py``), dynamic
batching (``batcher.py``), request limits (``uploads.py``), metrics and the browser page.
See docs/serving.md.
"""
from __future__ import annotations

import gc
import signal
import socket
import threading

from ..errors import DensekitError

try:
    import fastapi_offline  # noqa: F401  (the /docs and /redoc scripts, served locally)
    import uvicorn

    from .app import check_setting, create_app
    from .protocol import HeadLimits, guarded_protocol
except ImportError as err:  # the serve extra is optional
    from ..extras import missing_extra
    raise missing_extra("densekit serve", "serve", err.name) from None

__all__ = ["create_app", "serve"]


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise DensekitError(f"cannot listen on {host}:{port} ({err.strerror}); pick another --port or --host") from None
    return sock


def serve(source, host: str = "127.0.0.1", port: int = 8000, drain_timeout: float = 30.0,
          log_level: str = "info", json_line: bool = False, max_header_bytes: int = HeadLimits.max_header_bytes,
          max_headers: int = HeadLimits.max_headers, header_timeout: float = HeadLimits.header_timeout,
          **app_options) -> None:
    """Serve ``source`` over HTTP until SIGTERM or Ctrl-C; ``app_options`` go to ``create_app``.

    ``max_header_bytes`` / ``max_headers`` / ``header_timeout``: a request's head (request line and
    headers) in bytes, in header fields, and in seconds from its first byte (``protocol.py``).
    SIGTERM stops taking connections, answers the requests in flight (for at most
    ``drain_timeout`` seconds), drains the batcher and returns. ``port`` 0 picks a free port;
    the address is printed on stdout once the socket is bound (as one JSON object with ``json_line``)."""
    for name, value, minimum in (("max_header_bytes", max_header_bytes, 256), ("max_headers", max_headers, 4),
                                 ("header_timeout", header_timeout, 0.001), ("drain_timeout", drain_timeout, 0)):
        check_setting(name, value, minimum)
    head = HeadLimits(int(max_header_bytes), int(max_headers), float(header_timeout))
    sock = _listen(host, port)  # first: a port in use fails before a model loads
    try:
        app = create_app(source, **app_options)
        # Python's full garbage collections walk every object alive, PyTorch's and the model's included:
        # under load each held every request up for ~150 ms (p99 176 ms against a p50 of 27 ms at
        # concurrency 32). What exists now lives as long as the server, so collections skip it.
        gc.freeze()
        bound = sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        url, card = f"http://{url_host}:{bound}", app.state.backend.card
        if json_line:
            import json
            line = json.dumps({"url": url, "model": card["name"], "backend": card["backend"], "classes": card["classes"],
                               "docs": url + "/docs", "page": url + "/"})
        else:
            line = f"densekit serve: {card['name']} on {url} (docs: /docs, page: /)"
        # httptools (uvicorn's fastest parser) with the limits on a request's head that it lacks
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=drain_timeout,
                                access_log=False, http=guarded_protocol(app.state.metrics, head))
        server = _Announcing(config, line)
        # uvicorn re-raises the signal that stopped it once it has drained; for SIGTERM that should
        # end in a clean return (exit 0), not in the default handler killing the process.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: None) if main else None
        try:
            server.run(sockets=[sock])
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
    finally:
        sock.close()
    if not server.started:
        raise DensekitError("the server did not start; see the log above")


class _Announcing(uvicorn.Server):
    """Prints the address once the server listens and its signal handlers are in place, so a client
    that reads the line and sends SIGTERM at once always gets a drained, clean stop."""

    def __init__(self, config, line: str):
        super().__init__(config)
        self.line = line

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            print(self.line, flush=True)
