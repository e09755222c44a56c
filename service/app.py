"""The FastAPI application: `create_app()` wires config, Redis, storage, routes and errors."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio
from fastapi import FastAPI

import jaxport
from jaxport.jobs import JobStore
from jaxport.storage import open_storage
from service import errors, inspection, jobs, ops, ui
from service.config import Settings
from service.metrics import MetricsMiddleware

log = logging.getLogger("jaxport.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for `settings` (default: from the environment). Storage and Redis are opened
    here; a bad storage URL fails at start, an unreachable Redis shows in /readyz."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_enabled:
            log.info("auth on: %d API key(s)", len(settings.api_keys))
        else:
            log.warning("auth off: no JAXPORT_API_KEYS; every caller is tenant 'local'")
        yield
        await app.state.aredis.aclose()

    app = FastAPI(title="jaxport", version=getattr(jaxport, "__version__", "0"),
                  description="Convert Keras 3 on JAX models into verified SavedModel, TFLite "
                              "and TensorFlow.js artifacts.", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = JobStore.from_url(settings.redis_url)
    app.state.aredis = redis.asyncio.Redis.from_url(settings.redis_url)
    app.state.storage = open_storage(settings.storage_url)
    app.state.upload_dir = Path(tempfile.gettempdir())
    app.add_middleware(MetricsMiddleware)
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(inspection.router)
    app.include_router(ops.router)
    app.include_router(ui.router)
    return app
