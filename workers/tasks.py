"""The Celery tasks: thin wrappers over workers.execute.execute_job and
workers.inspection.run_inspection."""

from __future__ import annotations

import os
import socket
from functools import cache

from jaxport.jobs import JobStore
from jaxport.storage import Storage, open_storage
from workers.app import TASK_NAME, celery_app, settings
from workers.execute import execute_job
from workers.inspection import INSPECT_TASK, run_inspection


@cache
def _backends() -> tuple[JobStore, Storage]:
    """Per pool process (created after the fork, never shared across it)."""
    return JobStore.from_url(settings.redis_url), open_storage(settings.storage_url)


@celery_app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> None:
    store, storage = _backends()
    execute_job(job_id, store, storage, settings, worker=f"{socket.gethostname()}:{os.getpid()}")


@celery_app.task(name=INSPECT_TASK, acks_late=False)
def inspect(request_id: str, key: str, function: str | None, trusted: bool) -> None:
    """Not redelivered if the worker dies: the API's wait times out and the client retries."""
    store, storage = _backends()
    run_inspection(request_id, key, function, trusted, store.r, storage, settings)
