"""uvicorn's httptools protocol with the limits it lacks on a request's head: its size, its
header count and the time it may take to arrive.

httptools accepts a head of any size and keeps a header that is still arriving in a growing
bytes object: a 169 MB header was answered 200, and one header dripped at 5 MB/s cost seconds of
server CPU, both before the app (and so ``--max-bytes`` and ``--body-timeout``) ever saw the
request. Here a head over ``max_header_bytes`` or ``max_headers`` gets 431, one still incomplete
``header_timeout`` seconds after its first byte gets 408, and a request httptools cannot parse
(``Content-Length: abc``) gets 400 -- each as the app's JSON error, counted in /metrics, and the
connection closed. A head that arrives whole in one read is measured exactly; one arriving in
pieces is measured by the bytes read since the previous head ended, so it can never grow past the
limit by more than one read (at most 256 KiB).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .metrics import Metrics


@dataclass(frozen=True)
class HeadLimits:
    max_header_bytes: int = 32 * 1024   # request line and headers together (nginx's large_client_header_buffers)
    max_headers: int = 100              # header fields (Node's and Go's defaults are of this order)
    header_timeout: float = 10.0        # seconds from a head's first byte to its last


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; ``send_400_response`` then answers."""


def guarded_protocol(metrics: Metrics, limits: HeadLimits) -> type:
    """An ``asyncio.Protocol`` class for ``uvicorn.Config(http=...)`` that enforces ``limits``
    and counts what it refuses in ``metrics``."""

    class GuardedHttpTools(HttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._refusal, self._in_head, self._head_bytes, self._timer = None, False, 0, None
            self._seen_bytes = False
            self._timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def connection_lost(self, exc):
            self._stop_timer()
            super().connection_lost(exc)

        def _stop_timer(self):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def data_received(self, data: bytes):  # uvicorn's, with the parser's reason kept and the head measured
            self._seen_bytes = True
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError as err:
                reason = str(err.__context__ if isinstance(err, httptools.HttpParserCallbackError) else err)
                self._refuse(*self._refusal or (400, "bad_request", f"the request is not valid HTTP/1.1 "
                                                f"({reason[:120] or 'unparsable'}); fix the client"))
                return
            if self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_header_bytes:
                    self._refuse(431, "headers_too_large", f"the request's headers passed "
                                 f"{limits.max_header_bytes:,} bytes; send smaller headers")

        def on_message_begin(self):
            super().on_message_begin()
            self._in_head = True
            if self._timer is None:
                self._timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def on_headers_complete(self):
            self._in_head, self._head_bytes = False, 0
            self._stop_timer()
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_bytes or len(self.headers) > limits.max_headers:
                self._refusal = (431, "headers_too_large", f"the request's head is {size:,} bytes in "
                                 f"{len(self.headers)} headers; the limits are {limits.max_header_bytes:,} bytes "
                                 f"and {limits.max_headers} headers")
                raise _Refused
            super().on_headers_complete()

        def _head_timed_out(self):
            self._timer = None
            if self.transport.is_closing():
                return
            if self._in_head:
                self._refuse(408, "header_timeout", f"the request's headers did not arrive within "
                             f"{limits.header_timeout:g} s; send them at once")
            elif not self._seen_bytes:  # a connection that never sent a byte: close it quietly
                self.transport.close()

        def _refuse(self, status: int, code: str, detail: str):
            """Answer with the app's JSON error and close the connection (no app call: none has begun)."""
            self._stop_timer()
            body = json.dumps({"error": code, "detail": detail}).encode()
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
            self.transport.close()
            metrics.errors.labels(code).inc()
            metrics.requests.labels("other", str(status)).inc()

    return GuardedHttpTools
