"""Prometheus's text exposition format (version 0.0.4), written here with no dependency.

* `render_prometheus` turns a `MinLog` (or families from `minlog.metrics.collect`) into the
  bytes a scrape gets;
* `respond` is the one request handler: ``GET``/``HEAD`` of the metrics path answers them,
  anything else a 404 or 405; `wsgi_app` mounts it in any WSGI server (the delivery
  service, gunicorn, a framework's mount point), `MetricsHandler` in `http.server`;
* `serve` runs it standalone on a thread, for an installation without a delivery service.

The format, as implemented: one ``# HELP`` (``\\`` and line feeds escaped) and one
``# TYPE`` line per family, then its samples, contiguous; a sample is
``name{label="value",...} value``, label values with ``\\``, ``"`` and line feeds escaped;
values are decimal, ``+Inf``, ``-Inf`` or ``NaN``; every line ends with a line feed.
"""

from __future__ import annotations

import http.server
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from minlog.client.facade import MinLog
from minlog.metrics.families import MetricFamily, check_families, collect

__all__ = ["CONTENT_TYPE", "METRICS_PATH", "MetricsHandler", "MetricsServer",
           "render_prometheus", "respond", "serve", "wsgi_app"]

#: The content type of the text format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: The path a scraper asks by default.
METRICS_PATH: Final = "/metrics"

Response = tuple[int, list[tuple[str, str]], bytes]


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render_prometheus(source: MinLog | Iterable[MetricFamily]) -> bytes:
    """The text format for ``source``: a `MinLog` (collected now) or metric families."""
    families = collect(source) if isinstance(source, MinLog) else list(source)
    check_families(families)
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {_help(f.spec.help)}")
        lines.append(f"# TYPE {f.name} {f.spec.kind}")
        for s in f.samples:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels)
            lines.append(f"{f.name}{{{labels}}} {_number(s.value)}" if labels
                         else f"{f.name} {_number(s.value)}")
    # A lone surrogate (not UTF-8) becomes "?" rather than failing the scrape.
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


def respond(log: MinLog, method: str, path: str, *, metrics_path: str = METRICS_PATH
            ) -> Response:
    """The answer to one HTTP request: status, headers and body."""
    if path.split("?", 1)[0] != metrics_path:
        return 404, [("Content-Type", "text/plain; charset=utf-8")], b"not found\n"
    if method not in ("GET", "HEAD"):
        return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")], \
            b"method not allowed\n"
    body = render_prometheus(log)
    return 200, [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))], \
        b"" if method == "HEAD" else body


_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}


def wsgi_app(log: MinLog, *, metrics_path: str = METRICS_PATH
             ) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """A WSGI application serving ``log``'s metrics at ``metrics_path``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status, headers, body = respond(log, environ.get("REQUEST_METHOD", "GET"),
                                        environ.get("PATH_INFO", "/"),
                                        metrics_path=metrics_path)
        start_response(f"{status} {_REASONS[status]}", headers)
        return [body]

    return app


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    """An `http.server` handler for one `MinLog`'s metrics: subclass it with ``log`` set,
    or let `serve` do it (``MetricsHandler.bind(log)`` makes such a subclass)."""

    log: MinLog
    metrics_path: str = METRICS_PATH

    @classmethod
    def bind(cls, log: MinLog, *, metrics_path: str = METRICS_PATH
             ) -> type[MetricsHandler]:
        return type("BoundMetricsHandler", (cls,), {"log": log, "metrics_path": metrics_path})

    def _answer(self) -> None:
        status, headers, body = respond(self.log, self.command, self.path,
                                        metrics_path=self.metrics_path)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes are not news; failures show in the scraper


class MetricsServer:
    """`serve`'s server: ``url``, ``port``; ``close()`` stops it (also as a context
    manager). ``handler``: a `MetricsHandler` subclass that answers more paths."""

    def __init__(self, log: MinLog, host: str, port: int, metrics_path: str, *,
                 handler: type[MetricsHandler] | None = None) -> None:
        handler = handler or MetricsHandler.bind(log, metrics_path=metrics_path)
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}{metrics_path}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="minlog-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(log: MinLog, port: int = 9464, *, host: str = "127.0.0.1",
          metrics_path: str = METRICS_PATH) -> MetricsServer:
    """Serve ``log``'s metrics at ``http://host:port/metrics`` on a daemon thread, for an
    installation without the delivery service. ``host`` is loopback by default (metrics
    hold no personal data, but say how busy a municipality is); ``port=0`` picks a free
    port (see ``.port``)."""
    return MetricsServer(log, host, port, metrics_path)
