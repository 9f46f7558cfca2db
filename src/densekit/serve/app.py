"""The HTTP prediction service: a FastAPI app over one model and its dynamic batcher.

    POST /v1/predict   images (multipart file parts, or one image as the body) -> densekit predict's JSON
    GET  /v1/model     the model card: name, classes, input size, metrics, versions, serving limits
    GET  /health       alive;  GET /ready: model loaded and warmed up, not draining
    GET  /metrics      Prometheus text;  GET /docs: the OpenAPI page;  GET /: the browser page

Images are decoded off the event loop, one at a time, each resized to the model's input and its
full-size pixels dropped before the next. Two lanes of threads share the work: a request of at
most ``SMALL_PIXELS`` in all decodes in one hop on the small lane (as many threads as cores), and
every larger image on the large lane (``decoders`` threads), so that peak memory is set by
``decoders x max_pixels``, not by clients, and a burst of large images cannot hold up small
requests. Forward passes run in the batcher's threads, which for the PyTorch backend hand them to
a process of their own (``forward.py``: the GIL). Errors are JSON ``{"error": code, "detail": one
line}`` with a 4xx status for anything the client can fix, 503 when the queue is full or the
server is draining.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
from contextlib import asynccontextmanager
from importlib import resources

import anyio
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..errors import DensekitError
from ..predictions import check_abstention, results
from .backends import load_backend, resolve_backend
from .batcher import Batcher, Closed, QueueFull
from .forward import ForwardProcess
from .metrics import CountRequests, Metrics
from .uploads import Limits, RequestError, read_images, request_pixels

log = logging.getLogger("densekit.serve")
# A request of up to this many pixels in all (a 1000 x 1000 photo decodes in ~10 ms) decodes on the
# small lane; at most cores x this many full-size pixels are held there at once.
SMALL_PIXELS = 1_000_000
PATHS = ("/", "/health", "/ready", "/metrics", "/v1/model", "/v1/predict", "/docs", "/redoc", "/openapi.json")


class Guess(BaseModel):
    label: str
    index: int
    prob: float


class Prediction(BaseModel):
    file: str | None
    label: str | None = None          # null: rejected, see reason (single-label models)
    confidence: float | None = None   # the calibrated top-1 probability
    ood_score: float | None = None    # energy score: higher is less like the training data
    reason: str | None = None         # low_confidence | out_of_distribution, for a rejection only
    top_k: list[Guess]
    labels: list[str] | None = None          # multi-label models: the labels at or above their thresholds
    scores: dict[str, float] | None = None   # multi-label models: every label's probability


class Error(BaseModel):
    error: str
    detail: str


# The request body, for the OpenAPI page: the handler reads it itself, to apply the limits while it streams.
BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "one or more images (any field name)"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}, "description": "one image as the whole body"}}}}
ERRORS = {status: {"model": Error, "description": text} for status, text in {
    400: "not an image, a truncated image, a malformed body", 408: "the body arrived too slowly",
    413: "over the byte, file or pixel limit", 415: "neither multipart/form-data nor an image type",
    422: "a bad query parameter", 503: "the queue is full or the server is shutting down"}.items()}


def check_setting(name: str, value, minimum):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise DensekitError(f"--{name.replace('_', '-')} must be a number >= {minimum}, got {value!r}")


def add_docs(app: FastAPI):
    """/docs (Swagger UI) and /redoc with their scripts served from here, not from a CDN: the
    fastapi-offline package ships them, so the pages work on a machine without internet."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")
    title = app.title + " - API"

    @app.get("/docs", include_in_schema=False)
    async def swagger():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=title,
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=title, redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)


def default_threads(workers: int) -> int | None:
    """Intra-op threads per forward pass with ``workers`` inference threads: the cores shared out
    among them (None for one worker: the library's own default, one per core)."""
    if workers == 1:
        return None
    cores = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    return max(1, cores // workers)


def create_app(source, backend: str = "auto", device: str = "auto", tta: str | None = None,
               max_batch_size: int = 32, max_delay_ms: float = 5.0, workers: int = 1, threads: int | None = None,
               queue_size: int = 256, reject_below: float | None = None, reject_ood: bool = False,
               max_bytes: int = Limits.max_bytes, max_files: int = Limits.max_files,
               max_pixels: int = Limits.max_pixels, max_request_pixels: int = Limits.max_request_pixels,
               body_timeout: float = Limits.body_timeout, decoders: int = 1,
               forward_process: bool | None = None) -> FastAPI:
    """The ASGI app serving ``source`` (a run folder, a checkpoint, or an ``.onnx`` export).

    ``max_batch_size`` / ``max_delay_ms``: a forward pass takes up to this many images, waiting at
    most this long after the first for more, and only while another request is being read or
    decoded (1: no batching). ``workers``: inference threads, each
    running forward passes; ``threads``: intra-op threads of each forward pass (default: the cores
    shared among the workers; one worker: one per core). ``queue_size``: images that may wait;
    beyond it a request gets 503. ``max_bytes`` / ``max_files`` / ``max_pixels`` / ``body_timeout``:
    per request, per request, per image, seconds to receive a body. ``reject_below`` / ``reject_ood``:
    abstention, as ``densekit predict``'s (rejections are counted in /metrics by reason).
    ``forward_process``: each worker's forward passes run in a child process (``forward.py``); None:
    for the PyTorch backend, whose passes would contend with the HTTP work for the GIL. The model
    loads here (in the first forward process, if any), so a bad source fails before a server starts."""
    for name, value, minimum in (("max_batch_size", max_batch_size, 1), ("max_delay_ms", max_delay_ms, 0),
                                 ("workers", workers, 1), ("threads", 1 if threads is None else threads, 1),
                                 ("queue_size", queue_size, 1), ("max_bytes", max_bytes, 1),
                                 ("max_files", max_files, 1), ("max_pixels", max_pixels, 1),
                                 ("max_request_pixels", max_request_pixels, 1), ("decoders", decoders, 1),
                                 ("body_timeout", body_timeout, 0.001)):
        check_setting(name, value, minimum)
    limits = Limits(max_bytes=int(max_bytes), max_files=int(max_files), max_pixels=int(max_pixels),
                    max_request_pixels=int(max_request_pixels), body_timeout=float(body_timeout))
    threads = threads or default_threads(workers)
    backend = resolve_backend(source, backend)
    forward_process = backend == "torch" if forward_process is None else bool(forward_process)
    if forward_process:   # the first worker's child loads the model; this process never imports PyTorch
        model = ForwardProcess(source, backend=backend, device=device, tta=tta, threads=threads)
    else:
        model = load_backend(source, backend=backend, device=device, tta=tta, threads=threads)
    check_abstention(model.spec, reject_below, reject_ood)   # before the server starts
    metrics = Metrics(PATHS)
    small_lane = anyio.CapacityLimiter(max(1, len(os.sched_getaffinity(0))))
    large_lane = anyio.CapacityLimiter(int(decoders))
    serving = {"max_batch_size": max_batch_size, "max_delay_ms": max_delay_ms, "workers": workers, "threads": threads,
               "queue_size": queue_size, "max_bytes": limits.max_bytes, "max_files": limits.max_files,
               "max_pixels": limits.max_pixels, "max_request_pixels": limits.max_request_pixels,
               "decoders": int(decoders),
               "reject_below": model.spec.reject_below if reject_below is None else reject_below,
               "reject_ood": reject_ood, "forward_process": forward_process}
    state = {"batcher": None, "status": "loading"}

    def logits(arrays: list):
        """One forward pass over the images the batcher gathered: a row of logits each."""
        predictor = state["idle"].get()
        try:
            return predictor.logits(np.stack(arrays))
        finally:
            state["idle"].put(predictor)

    def start_processes() -> list:
        """The model's own child (started again if a previous run of the app stopped it) and one more
        per further worker."""
        started = [model]
        try:
            for _ in range(workers - 1):
                started.append(model.copy())
        except BaseException:
            for process in started:
                process.close()
            raise
        return started

    @asynccontextmanager
    async def lifespan(app):
        started = await anyio.to_thread.run_sync(start_processes) if forward_process else []
        state["idle"] = queue.SimpleQueue()   # a predictor per worker not in a pass now: its process, or the model
        for predictor in started or [model] * workers:
            state["idle"].put(predictor)
        batcher = Batcher(logits, max_batch_size, max_delay_ms / 1000, queue_size, workers,
                          on_batch=metrics.on_batch, announced=True)
        metrics.queue_depth.set_function(lambda: batcher.depth)
        metrics.incoming.set_function(lambda: batcher.incoming)
        state["batcher"] = batcher
        h, w = model.spec.image_size
        blank = model.decode(Image.new("L", (w, h)))
        for predictor in started or [model]:   # the first pass sets up kernels: not on a client
            await anyio.to_thread.run_sync(predictor.logits, blank[None])
        state["status"] = "ready"
        log.info("serving %s (%s backend)", model.card["name"], model.backend)
        try:
            yield
        finally:
            # uvicorn calls this after the requests in flight have been answered; close answers any left.
            state["status"] = "draining"
            await anyio.to_thread.run_sync(batcher.close)
            for process in started:
                await anyio.to_thread.run_sync(process.close)

    app = FastAPI(title=f"densekit: {model.card['name']}", version=model.card["versions"]["densekit"],
                  description="Image classification with a densekit model. POST images to /v1/predict.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    add_docs(app)
    app.add_middleware(CountRequests, metrics=metrics)

    def error(status: int, code: str, detail: str) -> JSONResponse:
        metrics.errors.labels(code).inc()
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def request_error(request, err: RequestError):
        return error(err.status, err.code, err.message)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request, err: RequestValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(422, "bad_parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, f"http_{err.status_code}")
        return error(err.status_code, code, f"{request.method} {request.url.path}: {err.detail}")

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):  # logged by the server; the client gets JSON
        return error(500, "internal", f"{type(err).__name__}: {str(err)[:200]}")

    def decode(files) -> list:
        """Each image decoded and resized in turn: only one image's full-size pixels live at once."""
        out = []
        for name, data in files:
            try:
                out.append(model.decode(data, name))
            except DensekitError as err:
                raise RequestError(400, "unreadable_image", f"{name or 'the body'} could not be decoded "
                                   f"(truncated or corrupt): {err}") from None
        return out

    def probe(files):
        """Headers only: the limits checked before any pixel is decoded; a small request decoded at once."""
        counts = request_pixels(files, limits)
        return (counts, decode(files)) if sum(counts) <= SMALL_PIXELS else (counts, None)

    async def decode_request(files) -> list:
        counts, arrays = await anyio.to_thread.run_sync(probe, files, limiter=small_lane)
        if arrays is not None:
            return arrays
        arrays = []
        for file, count in zip(files, counts):
            lane = small_lane if count <= SMALL_PIXELS else large_lane
            arrays += await anyio.to_thread.run_sync(decode, [file], limiter=lane)
        return arrays

    @app.post("/v1/predict", response_model=list[Prediction], openapi_extra=BODY, responses=ERRORS,
              summary="Top-k classes (multi-label models: label sets and scores) of one or more images")
    async def predict(request: Request, top_k: int = Query(5, ge=1, description="classes per image")):
        """The schema of ``densekit predict --json``: one entry per image, in the order sent, ``file``
        the part's file name (null for a raw body)."""
        batcher = state["batcher"]
        if state["status"] != "ready":
            raise RequestError(503, "not_ready", f"the server is {state['status']}; retry shortly")
        with batcher.coming() as ticket:   # a forming batch waits for this request while it is read and decoded
            files = await read_images(request, limits)
            if len(files) > queue_size:
                raise RequestError(413, "too_many_files", f"{len(files)} images; this server takes at most "
                                   f"{queue_size} at once (--queue-size); split the request")
            if batcher.depth + len(files) > queue_size:  # shed load before decoding; submit checks again
                raise RequestError(503, "queue_full", f"the server is busy ({batcher.depth} images waiting); retry")
            arrays = await decode_request(files)
            try:
                futures = batcher.submit(arrays, ticket)
            except QueueFull as err:
                raise RequestError(503, "queue_full", f"the server is busy ({err}); retry") from None
            except Closed:
                raise RequestError(503, "shutting_down", "the server is shutting down; retry on another") from None
        try:
            rows = [await asyncio.wrap_future(futures[0])] if len(futures) == 1 else \
                await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except Exception as err:
            log.exception("forward pass failed")
            raise RequestError(500, "inference_failed", f"the forward pass failed: {type(err).__name__}: "
                               f"{str(err)[:200]}") from None
        # A Response goes out as it is: response_model documents the schema without re-validating each answer.
        answers = results(np.stack(rows), model.spec, top_k, reject_below, reject_ood)   # the schema every route shares
        for answer in answers:
            if answer.get("reason"):
                metrics.rejections.labels(answer["reason"]).inc()
        return JSONResponse([{"file": name, **answer} for (name, _), answer in zip(files, answers)])

    @app.get("/v1/model", summary="The model card")
    async def model_card():
        return {**model.card, "serving": serving}

    @app.get("/health", summary="Alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Model loaded and taking requests", responses={503: {"model": Error}})
    async def ready():
        if state["status"] != "ready":
            return error(503, "not_ready", f"the server is {state['status']}")
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = resources.files(__package__).joinpath("page.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    app.state.backend, app.state.metrics = model, metrics
    return app
