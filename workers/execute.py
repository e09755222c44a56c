"""One job, start to finish, on a worker: lease, download, convert in an isolated child,
package, upload, record. Safe to run twice for the same job (at-least-once delivery).

Two identical jobs (same tenant, bytes, options) in flight convert once: the second to start
waits, lease kept, while the first runs (`JobStore.claim_inflight`) and is answered from its
artifacts; if the first does not succeed, or goes back to the queue after losing its worker,
the second converts on its own (so a lone worker never waits on a job queued behind it).

The record's `timings` are the report's (`jaxport.timings`) with the worker's own stages:
`download` first, `packaging` and `upload` (of the artifacts) last.

Each pool process keeps the JS runtimes (`jaxport.verify.kept`: Node for TF.js, Node and
Chromium for LiteRT.js) for the conversions it forks, started at warm-up (`kept_runtimes()`),
checked before each conversion and restarted after one that was killed."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jaxport.errors import JaxportError
from jaxport.jobs import (FAILED, PARTIAL, RUNNING, SUCCEEDED, TERMINAL, JobNotFound, JobRecord,
                          JobStore, artifact_key, report_fields)
from jaxport.jobs.reuse import reuse_result
from jaxport.options import ConvertOptions
from jaxport.storage import Storage, StorageError
from jaxport.timings import Timings
from jaxport.verify.kept import KeptRuntimes
from service.config import Settings
from workers.isolation import ChildCrashed, JobAborted, JobLimitExceeded, Limits, Send, run_isolated
from workers import warmup
from workers.packaging import build_artifacts

log = logging.getLogger("jaxport.worker")

LEASE_TTL_S = 10.0
COMPLETE_MARKER = "complete.json"
FOLLOW_POLL_S = 1.0
_kept: KeptRuntimes | None = None  # this pool process's, once kept_runtimes() made it


def kept_runtimes() -> KeptRuntimes:
    """This pool process's kept JS runtimes (made, not started, on the first call)."""
    global _kept
    if _kept is None:
        from workers.app import settings

        _kept = KeptRuntimes(names=settings.kept_runtimes)
    return _kept


def _kept_runtimes_checked() -> None:
    for name, why in (_kept.start() if _kept else {}).items():
        log.warning("the kept %s runtime did not restart; conversions start their own: %s", name, why)


def execute_job(job_id: str, store: JobStore, storage: Storage, settings: Settings,
                worker: str) -> None:
    """Run job `job_id` unless it is gone, finished, or leased by a live worker."""
    try:
        record = store.get(job_id)
    except JobNotFound:
        return
    if record["status"] in TERMINAL:
        return
    token = f"{worker}:{uuid.uuid4().hex}"
    if not store.acquire_lease(job_id, token, LEASE_TTL_S):
        log.info("job %s is leased by another worker; skipping this delivery", job_id)
        return
    try:
        _run_leased(job_id, store, storage, settings, worker, token)
    finally:
        store.release_lease(job_id, token)


def _run_leased(job_id: str, store: JobStore, storage: Storage, settings: Settings, worker: str,
                token: str) -> None:
    marker = artifact_key(job_id, COMPLETE_MARKER)
    with tempfile.TemporaryDirectory(prefix="jaxport-job-") as tmp:
        work = Path(tmp)
        if storage.exists(marker):  # a previous attempt uploaded everything, then died
            storage.get_file(marker, work / COMPLETE_MARKER)
            done = json.loads((work / COMPLETE_MARKER).read_text())
            _finish(job_id, store, storage, settings, done["report"], done["artifacts"])
            return
        if _answered_by_identical_job(job_id, store, storage, token):
            return
        record = store.update(job_id, lambda r: {
            "status": RUNNING, "stage": "starting", "progress": 0.0, "attempts": r["attempts"] + 1,
            "worker": worker, "error": None, "message": ""})
        if record is None:  # canceled or deleted meanwhile
            return
        try:
            report = _convert(record, work, store, storage, settings, token)
        except JobAborted:
            log.info("job %s stopped: canceled or lease lost", job_id)
            store.release_inflight(record)
            return
        except JaxportError as exc:
            _fail(job_id, store, storage, exc.to_dict())
            return
        try:
            artifacts = _deliver(job_id, report, work, store, storage, token)
        except StorageError as exc:  # retried already (the backend's policy): a named failure
            _fail(job_id, store, storage, exc.to_dict())
            return
        _finish(job_id, store, storage, settings, report, artifacts)


def _deliver(job_id: str, report: dict, work: Path, store: JobStore, storage: Storage,
             token: str) -> list[dict]:
    """Package the job's output and upload it, the completion marker last; return the
    artifact list. The record is not touched: it names artifacts only once all are stored."""
    timings = Timings(report.get("timings"))
    with lease_kept(store, job_id, token):
        with timings.stage("packaging"):
            files = build_artifacts(work / "out", work)
        with timings.stage("upload"):
            artifacts = [{"name": name, "bytes": storage.put_file(artifact_key(job_id, name), path)}
                         for name, path in files.items()]
        report["timings"] = timings.to_json()
        (work / COMPLETE_MARKER).write_text(json.dumps({"report": report, "artifacts": artifacts}))
        storage.put_file(artifact_key(job_id, COMPLETE_MARKER), work / COMPLETE_MARKER)
    return artifacts


def _answered_by_identical_job(job_id: str, store: JobStore, storage: Storage, token: str) -> bool:
    """Claim the job's in-flight mark, or wait for the identical job holding it. True when the
    job needs no conversion: answered from the other job's result, or canceled meanwhile."""
    while True:
        record = store.get(job_id)
        cached = store.cached_job(record["tenant"], record["upload"]["sha256"], record["options"])
        if cached is not None:  # an identical job finished after this one was queued
            return _reuse(job_id, cached, store, storage, "answered from an identical earlier job")
        leader = store.claim_inflight(record)
        if leader == job_id:
            return False
        if store.update(job_id, {"status": RUNNING, "stage": "waiting", "progress": 0.0,
                                 "message": f"waiting for identical job {leader}"}) is None:
            return True
        log.info("job %s waits for identical job %s", job_id, leader)
        with lease_kept(store, job_id, token):
            source = _wait_for(leader, job_id, store)
        if source is None:
            return True  # this job was canceled or deleted
        if source.get("status") == SUCCEEDED:
            return _reuse(job_id, source, store, storage, f"answered from identical job {leader}")
        # the other job did not succeed, or lost its worker: claim the mark and convert


def _reuse(job_id: str, source: JobRecord, store: JobStore, storage: Storage, message: str) -> bool:
    record = store.update(job_id, reuse_result(storage, source, job_id, message))
    if record is not None:
        _drop_upload(record, storage)
    return True


def _wait_for(other: str, job_id: str, store: JobStore) -> JobRecord | None:
    """Poll until job `other` stops running (finished, or queued again after losing its worker)
    or is gone ({} then); None if `job_id` itself stops running (canceled)."""
    while True:
        try:
            if store.get(job_id)["status"] != RUNNING:
                return None
        except JobNotFound:
            return None
        try:
            record = store.get(other)
        except JobNotFound:
            return {}
        if record["status"] != RUNNING:
            return record
        time.sleep(FOLLOW_POLL_S)


@contextmanager
def lease_kept(store: JobStore, job_id: str, token: str) -> Iterator[None]:
    """Renew the job's lease from a thread while the body runs (a long download or upload).

    Not used around the conversion itself: that forks, and a fork is kept thread-free; the
    supervising loop renews the lease there."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(1.0):
            try:
                store.renew_lease(job_id, token, LEASE_TTL_S)
            except Exception as exc:  # Redis away: the next round tries again
                log.warning("job %s: lease renewal failed: %s", job_id, exc)

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _convert(record: JobRecord, work: Path, store: JobStore, storage: Storage, settings: Settings,
             token: str) -> dict:
    job_id = record["id"]
    archive = work / record["upload"]["key"].rsplit("/", 1)[-1]
    timings = Timings()
    with lease_kept(store, job_id, token), timings.stage("download"):
        storage.get_file(record["upload"]["key"], archive)
    options = dict(record["options"])
    trusted = bool(options.pop("trusted", False))
    limits = Limits(timeout_s=min(record["limits"]["timeout_s"], settings.job_timeout_s),
                    max_memory_mb=min(record["limits"]["max_memory_mb"], settings.job_max_memory_mb),
                    max_file_bytes=settings.job_max_file_mb * 2**20)

    def work_in_child(send: Send) -> dict:
        from jaxport.pipeline import convert_archive

        def progress(stage: str, fraction: float, message: str) -> None:
            send({"type": "progress", "stage": stage, "progress": fraction, "message": message})

        from jaxport.parallel import default_processes

        # A cold child (forked before the warm-up's imports) converts in one process: the pool
        # process imports TensorFlow on the other core meanwhile (workers.warmup).
        processes = default_processes(jobs_at_once=settings.worker_concurrency) if warmup.warm() else 1
        return convert_archive(archive, work / "out", ConvertOptions.from_json(options, trusted=trusted),
                               progress=progress, processes=processes)

    def on_progress(message: dict[str, Any]) -> None:
        store.update(job_id, {"stage": message["stage"], "message": message["message"],
                              "progress": round(float(message["progress"]), 4)})

    def keep_going() -> bool:
        if not store.renew_lease(job_id, token, LEASE_TTL_S):
            return False
        try:
            return store.get(job_id)["status"] == RUNNING
        except JobNotFound:
            return False

    _kept_runtimes_checked()
    if warmup.importing():
        on_progress({"stage": "starting", "progress": 0.0,
                     "message": "waiting for the worker to finish its warm-up (importing TensorFlow)"})
    try:
        report = run_isolated(work_in_child, limits, on_progress=on_progress, keep_going=keep_going)
    except (JobLimitExceeded, JobAborted, ChildCrashed):
        if _kept:  # the child may have died mid-request: the runners start afresh
            _kept.restart()
        raise
    report["timings"] = {**timings.to_json(), **report.get("timings", {})}
    return report


def _job_status(report: dict, requested: list[str]) -> tuple[str, dict | None]:
    """succeeded (every requested target ok), partial (some ok) or failed, with an error."""
    targets = report.get("targets", {})
    ok = [n for n in requested if targets.get(n, {}).get("status") == "ok"]
    failed = {n: targets.get(n, {}) for n in requested if n not in ok}
    if not failed:
        return SUCCEEDED, None
    summary = "; ".join(f"{n}: {_error_text(t)}" for n, t in failed.items())
    error = {"code": "target_failed", "message": summary,
             "hint": "see targets[...].error and report.json for each target"}
    return (PARTIAL if ok else FAILED), error


def _error_text(target: dict) -> str:
    error = target.get("error")
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error or target.get("status"))


def _finish(job_id: str, store: JobStore, storage: Storage, settings: Settings, report: dict,
            artifacts: list[dict]) -> None:
    def changes(record: JobRecord) -> dict:
        status, error = _job_status(report, record["options"]["targets"])
        return {"status": status, "stage": "done", "progress": 1.0, "message": "", "error": error,
                **report_fields(report), "artifacts": artifacts}

    record = store.update(job_id, changes)
    if record is not None:
        _drop_upload(record, storage)
        if record["status"] == SUCCEEDED:
            store.remember_result(record, ttl_s=settings.job_ttl_s)
        store.release_inflight(record)


def _fail(job_id: str, store: JobStore, storage: Storage, error: dict) -> None:
    record = store.update(job_id, {"status": FAILED, "stage": "failed", "error": error})
    if record is not None:
        _drop_upload(record, storage)
        store.release_inflight(record)


def _drop_upload(record: JobRecord, storage: Storage) -> None:
    """Delete a finished job's upload; if storage is away, leave it to the retention sweep."""
    try:
        storage.delete_prefix(record["upload"]["key"].rsplit("/", 1)[0] + "/")
    except StorageError as exc:
        log.warning("job %s: its upload stays until the retention sweep: %s", record["id"], exc)
