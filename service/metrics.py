"""Prometheus metrics of the API process, and the ASGI middleware that records requests."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("jaxport_http_requests_total", "HTTP requests answered",
                   ["method", "route", "status"])
LATENCY = Histogram("jaxport_http_request_seconds", "Time to the response headers",
                    ["method", "route"])
JOBS_SUBMITTED = Counter("jaxport_jobs_submitted_total",
                         "Accepted submissions by outcome (queued, cached, replayed)", ["outcome"])
UPLOAD_BYTES = Counter("jaxport_upload_bytes_total", "Bytes of accepted uploads")
ACTIVE_JOBS = Gauge("jaxport_jobs_active", "Jobs queued or running (all tenants), at scrape time")
LIVE_WORKERS = Gauge("jaxport_workers_live", "Workers with a live heartbeat, at scrape time")


class MetricsMiddleware:
    """Counts every request by method, route template (not raw path) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUESTS.labels(scope["method"], route, str(message["status"])).inc()
                LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_wrapper)
