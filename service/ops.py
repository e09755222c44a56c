"""Operational endpoints: liveness, readiness (Redis and storage reachable), Prometheus."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service import metrics as metrics_module
from service.errors import error_response

log = logging.getLogger("jaxport.service")
router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis and storage are reachable")
async def readyz(request: Request) -> JSONResponse:
    checks = {}
    for name, ping in (("redis", request.app.state.store.ping),
                       ("storage", request.app.state.storage.ping)):
        try:
            await run_in_threadpool(ping)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", reported by name
            checks[name] = f"{type(exc).__name__}: {exc}"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(f"{k} ({v})" for k, v in checks.items() if v != "ok")
    return error_response(503, "not_ready", f"not ready: {failing}",
                          "check JAXPORT_REDIS_URL and JAXPORT_STORAGE_URL")


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    store = request.app.state.store
    try:
        metrics_module.ACTIVE_JOBS.set(len(await run_in_threadpool(store.active_ids)))
        metrics_module.LIVE_WORKERS.set(len(await run_in_threadpool(store.live_workers)))
    except Exception:  # Redis away: the request counters are still worth scraping
        log.warning("metrics: Redis unreachable; job gauges not refreshed")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
