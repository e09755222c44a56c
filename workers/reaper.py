"""Housekeeping in every worker: re-queue jobs whose worker died mid-way, and delete jobs whose
retention ran out.

A running job's worker renews a Redis lease every second (workers.execute). A job that is
`running` with no lease and no update for a lease TTL has lost its worker (SIGKILL, OOM kill,
machine gone): exactly one reaper (`claim_requeue`) puts it back on the queue, or fails it
after MAX_ATTEMPTS so a job that kills workers cannot loop forever.

A job that finished more than `JAXPORT_JOB_TTL_S` ago is swept (`sweep_once`): its artifacts,
its upload and its record go, as `DELETE /v1/jobs/{id}` would remove them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from jaxport.jobs import FAILED, QUEUED, RUNNING, JobNotFound, JobStore
from jaxport.storage import Storage, StorageError, open_storage
from service.config import Settings
from workers.execute import LEASE_TTL_S

log = logging.getLogger("jaxport.worker")

SCAN_EVERY_S = 3.0
SWEEP_EVERY_S = 60.0
MAX_ATTEMPTS = 3


def reap_once(store: JobStore, enqueue: Callable[[str], None]) -> list[str]:
    """One scan; returns the ids re-queued or failed."""
    handled = []
    for job_id in store.active_ids():
        try:
            record = store.get(job_id)
        except JobNotFound:
            continue
        if (record["status"] != RUNNING or store.lease_held(job_id)
                or time.time() - record["updated_at"] < LEASE_TTL_S
                or not store.claim_requeue(job_id, record["attempts"], 10 * LEASE_TTL_S)):
            continue
        if record["attempts"] >= MAX_ATTEMPTS:
            store.update(job_id, {"status": FAILED, "stage": "failed", "error": {
                "code": "worker_lost",
                "message": f"the worker running this job died {record['attempts']} times",
                "hint": "the model may crash the converter or exhaust the machine's memory"}})
            log.warning("job %s failed: worker lost %d times", job_id, record["attempts"])
        else:
            store.update(job_id, {"status": QUEUED, "stage": "queued",
                                  "message": "worker lost; queued again"})
            enqueue(job_id)
            log.warning("job %s lost its worker; re-queued", job_id)
        handled.append(job_id)
    return handled


def sweep_once(store: JobStore, storage: Storage, ttl_s: float, now: float | None = None) -> list[str]:
    """Delete every job that became terminal more than `ttl_s` seconds before `now`; return
    their ids. Safe to run in several workers at once (each delete is idempotent)."""
    swept = store.finished_before((time.time() if now is None else now) - ttl_s)
    for job_id in swept:
        storage.delete_prefix(f"jobs/{job_id}/")
        storage.delete_prefix(f"uploads/{job_id}/")
        try:
            store.delete(store.get(job_id))
        except JobNotFound:
            store.forget(job_id)
    if swept:
        log.info("swept %d job(s) past their retention of %g s", len(swept), ttl_s)
    return swept


def start_reaper(settings: Settings, enqueue: Callable[[str], None], hostname: str) -> threading.Thread:
    """Scan every SCAN_EVERY_S seconds in a daemon thread of the worker's main process, and
    keep the worker's heartbeat key alive while it consumes (`workers.health`); sweep expired
    jobs every SWEEP_EVERY_S."""
    store = JobStore.from_url(settings.redis_url)
    storage = open_storage(settings.storage_url)

    def loop() -> None:
        last_sweep = 0.0
        while True:
            try:
                store.worker_heartbeat(hostname, 3 * SCAN_EVERY_S)
                reap_once(store, enqueue)
                if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    sweep_once(store, storage, settings.job_ttl_s)
            except (redis.RedisError, StorageError) as exc:  # away for a moment: next round
                log.warning("housekeeping on %s cannot reach Redis or storage: %s", hostname, exc)
            except Exception:
                log.exception("reaper scan failed on %s", hostname)
            time.sleep(SCAN_EVERY_S)

    thread = threading.Thread(target=loop, name="jaxport-reaper", daemon=True)
    thread.start()
    return thread
