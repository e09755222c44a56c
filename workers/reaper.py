"""Re-queue jobs whose worker died mid-way.

A running job's worker renews a Redis lease every second (workers.execute). A job that is
`running` with no lease and no update for a lease TTL has lost its worker (SIGKILL, OOM kill,
machine gone): exactly one reaper (`claim_requeue`) puts it back on the queue, or fails it
after MAX_ATTEMPTS so a job that kills workers cannot loop forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from jaxport.jobs import FAILED, QUEUED, RUNNING, JobNotFound, JobStore
from service.config import Settings
from workers.execute import LEASE_TTL_S

log = logging.getLogger("jaxport.worker")

SCAN_EVERY_S = 3.0
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


def start_reaper(settings: Settings, enqueue: Callable[[str], None], hostname: str) -> threading.Thread:
    """Scan every SCAN_EVERY_S seconds in a daemon thread of the worker's main process, and
    keep the worker's heartbeat key alive while it consumes (`workers.health`)."""
    store = JobStore.from_url(settings.redis_url)

    def loop() -> None:
        while True:
            try:
                store.worker_heartbeat(hostname, 3 * SCAN_EVERY_S)
                reap_once(store, enqueue)
            except redis.RedisError as exc:  # Redis away for a moment: try again next round
                log.warning("reaper on %s cannot reach Redis: %s", hostname, exc)
            except Exception:
                log.exception("reaper scan failed on %s", hostname)
            time.sleep(SCAN_EVERY_S)

    thread = threading.Thread(target=loop, name="jaxport-reaper", daemon=True)
    thread.start()
    return thread
