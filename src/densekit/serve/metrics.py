"""The server's Prometheus metrics, in a registry of each app's own (two apps in one process
count apart), and the ASGI middleware that counts every request."""
from __future__ import annotations

import asyncio
import json
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..predictions import REASONS

# Latency buckets from 1 ms to 10 s: a batch-1 forward on a CPU is a few ms, a full queue seconds.
LATENCY = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, paths):
        self.paths = set(paths)
        self.registry = r = CollectorRegistry()
        self.requests = Counter("densekit_http_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=r)
        self.latency = Histogram("densekit_http_request_duration_seconds", "time from request to response, by path",
                                 ["path"], buckets=LATENCY, registry=r)
        self.errors = Counter("densekit_errors", "requests answered with an error, by code", ["code"], registry=r)
        self.images = Counter("densekit_images", "images classified", registry=r)
        self.rejections = Counter("densekit_rejections", "images answered label null, by reason "
                                  "(low_confidence, out_of_distribution)", ["reason"], registry=r)
        for reason in REASONS:      # both series exist from the start, at 0
            self.rejections.labels(reason)
        self.batch_size = Histogram("densekit_batch_size", "images per forward pass", buckets=SIZES, registry=r)
        self.batch_seconds = Histogram("densekit_batch_duration_seconds", "time of one forward pass", buckets=LATENCY,
                                       registry=r)
        self.queue_depth = Gauge("densekit_queue_depth", "images waiting for a forward pass", registry=r)
        self.incoming = Gauge("densekit_requests_incoming", "prediction requests being read or decoded (a forming "
                              "batch waits for them, up to --max-delay-ms)", registry=r)
        self.in_flight = Gauge("densekit_http_requests_in_flight", "requests being answered now", registry=r)

    def on_batch(self, size: int, seconds: float):
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.images.inc(size)


class CountRequests:
    """ASGI middleware: every HTTP request counted and timed by path (unknown paths as "other").

    A request still running when the drain timeout cancels it gets the JSON 503 ``shutting_down``
    here (uvicorn would send a text/plain 500 and log a traceback)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        m, start, status = self.metrics, time.perf_counter(), [500]

        started = [False]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0], started[0] = message["status"], True
            await send(message)
        path = scope["path"] if scope["path"] in m.paths else "other"
        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            if started[0]:  # too late for another answer
                raise
            body = json.dumps({"error": "shutting_down", "detail": "the server shut down before this request was "
                               "answered (drain timeout); retry on another"}).encode()
            await send_status({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"), (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": body})
            m.errors.labels("shutting_down").inc()
        finally:
            m.in_flight.dec()
            m.requests.labels(path, str(status[0])).inc()
            m.latency.labels(path).observe(time.perf_counter() - start)
