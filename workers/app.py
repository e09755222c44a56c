"""The Celery app: Redis broker, at-least-once delivery, warm TF/JAX in every pool process.

Delivery contract: `acks_late` + `task_reject_on_worker_lost` (a task is acknowledged only when
it has finished), prefetch 1, and a broker visibility timeout longer than any job may run, so
Redis never hands a running job to a second worker. A job whose worker dies outright
(SIGKILL, machine loss) is found by the lease reaper (workers.reaper) running in every worker
and re-queued within about a lease TTL; tasks are idempotent, so a duplicate delivery just
returns.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from service.config import Settings

os.environ.setdefault("KERAS_BACKEND", "jax")
log = logging.getLogger("jaxport.worker")

TASK_NAME = "jaxport.run_job"
QUEUE = "jaxport"

settings = Settings.from_env()
celery_app = Celery("jaxport", broker=settings.redis_url, include=["workers.tasks"])
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    # The per-job limit is enforced on the conversion child (workers.isolation); this hard
    # limit is only a backstop for the task around it.
    task_time_limit=settings.job_timeout_s + 600,
    broker_transport_options={"visibility_timeout": 2 * settings.job_timeout_s + 3600},
    broker_connection_retry_on_startup=True,
    # A new pool process imports JAX and Keras (~5 s) before it reports "up"; slow disks more.
    worker_proc_alive_timeout=180,
)


def enqueue(job_id: str) -> None:
    """Put a job on the queue (used by the API and by the reaper)."""
    celery_app.send_task(TASK_NAME, args=[job_id], queue=QUEUE)


def enqueue_inspection(request_id: str, key: str, function: str | None, trusted: bool) -> None:
    """Queue an inspection (workers.inspection) of the stored upload `key`."""
    from workers.inspection import INSPECT_TASK

    celery_app.send_task(INSPECT_TASK, args=[request_id, key, function, trusted], queue=QUEUE)


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Before any job, per pool process: open the compile cache, start the kept JS runtimes,
    import JAX, Keras and the engine's JAX side, then take jobs while a thread imports
    TensorFlow, keras_hub and the converters (`workers.warmup`); conversions fork from this
    process (workers.isolation) and start warm once it is.

    Nothing is compiled or run here: a JAX or TF runtime started before a fork deadlocks the
    child. The JS runtimes are other processes (`jaxport.verify.kept`), which every job's
    conversion uses. What the children compile (Keras initializers on model load, the
    reference) goes to the persistent compile cache (`jaxport.compile_cache`) and is reused
    by the next job."""
    from jaxport.compile_cache import enable_from_env
    from workers.execute import kept_runtimes
    from workers.warmup import Warmup

    warmup = Warmup()
    cache = enable_from_env()
    # Node for TF.js, Node + Chromium for LiteRT.js (seconds per job otherwise): they start
    # while the imports run.
    kept = kept_runtimes()
    failed = kept.spawn()
    log.info("pool process %d warming: compile cache %s; starting %s", os.getpid(), cache or "off",
             ", ".join(f"the kept {n} runtime" for n in kept.runners) or "no kept runtime")
    warmup.first()
    failed.update(kept.wait())
    for name, why in failed.items():
        log.warning("pool process %d: no kept %s runtime, each job starts its own: %s", os.getpid(),
                    name, why)
    warmup.start_rest()


@worker_ready.connect
def _start_reaper(sender: object = None, **_: object) -> None:
    from workers.reaper import start_reaper

    start_reaper(settings, enqueue, hostname=getattr(sender, "hostname", "worker"))
