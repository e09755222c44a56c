"""`/v1/jobs`: submit, read, list, watch (SSE), download, cancel/delete, and
single files of a job's TF.js model (what `tf.loadGraphModel` fetches in the web UI)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from jaxport.archive import inspect_archive
from jaxport.errors import ArchiveError, JaxportError
from jaxport.jobs import (ARTIFACT_NAMES, CANCELED, TERMINAL, JobNotFound, JobRecord, JobStore,
                          artifact_key, events_channel, new_job_id, new_record, public_view)
from jaxport.jobs.reuse import reuse_result
from jaxport.options import ConvertOptions, OptionsError
from jaxport.storage import ObjectNotFound, Storage
from service import metrics
from service.auth import tenant_for
from service.downloads import artifact_response, media_type, zip_member
from service.config import Settings
from service.errors import NotFound, ServiceUnavailable, TooManyRequests
from service.uploads import Upload, UploadError, archive_form, receive_upload
from workers.app import enqueue

log = logging.getLogger("jaxport.service")
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[str, Depends(tenant_for)]
SSE_KEEPALIVE_S = 15.0
MAX_IDEMPOTENCY_KEY = 255


def _store(request: Request) -> JobStore:
    return request.app.state.store


def _storage(request: Request) -> Storage:
    return request.app.state.storage


def _job_response(record: JobRecord, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(public_view(record), status_code=status,
                        headers={"Location": f"/v1/jobs/{record['id']}", **headers})


async def _get_owned(request: Request, job_id: str, tenant: str) -> JobRecord:
    try:
        return await run_in_threadpool(_store(request).get, job_id, tenant)
    except JobNotFound:
        raise NotFound(f"no job {job_id!r}", "list your jobs with GET /v1/jobs") from None


def _parse_options(fields: dict[str, str], trusted: bool) -> ConvertOptions:
    unknown = sorted(set(fields) - {"options"})
    if unknown:
        raise UploadError(f"unknown form field(s) {unknown}", "send `file` and optional `options`")
    raw = fields.get("options", "").strip()
    try:
        data = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        raise OptionsError(f"options is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise OptionsError("options JSON is nested too deeply") from None
    return ConvertOptions.from_json(data, trusted=trusted)


@router.post("", status_code=202, summary="Upload a model archive and queue its conversion",
             openapi_extra=archive_form(
                 "options", 'JSON, e.g. {"targets": ["savedmodel", "tflite"]}'))
async def submit_job(request: Request, tenant: Tenant,
                     idempotency_key: Annotated[str | None, Header()] = None) -> Response:
    """Answers 202 with the job; a replayed `Idempotency-Key` answers the job it created, and the
    same bytes with the same options answer at once from a finished job's artifacts."""
    settings, store = request.app.state.settings, _store(request)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise UploadError(f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters")
    if idempotency_key:
        known = await run_in_threadpool(store.idempotent_job, tenant, idempotency_key)
        if known:
            return await _replay(request, known, tenant)
    await run_in_threadpool(_check_tenant_limits, store, settings, tenant)
    job_id = new_job_id()
    tmp = Path(tempfile.mkdtemp(prefix="jaxport-upload-", dir=request.app.state.upload_dir))
    try:
        upload = await receive_upload(request, tmp, settings.max_upload_bytes)
        metrics.UPLOAD_BYTES.inc(upload.size)
        options = _parse_options(upload.fields, settings.allow_trusted_code).to_json()
        await run_in_threadpool(check_archive, upload.path)
        if idempotency_key:
            owner = await run_in_threadpool(store.claim_idempotency_key, tenant, idempotency_key, job_id)
            if owner != job_id:
                return await _replay(request, owner, tenant)
        try:
            return await _create_job(request, job_id, tenant, upload, options)
        except BaseException:
            if idempotency_key:
                await run_in_threadpool(store.release_idempotency_key, tenant, idempotency_key, job_id)
            raise
    finally:
        await run_in_threadpool(shutil.rmtree, tmp, True)


ACTIVE_RETRY_AFTER_S = 10


def _check_tenant_limits(store: JobStore, settings: Settings, tenant: str) -> None:
    """Refuse (429) a tenant over its upload rate or its active jobs before reading the upload."""
    count, left_s = store.count_upload(tenant)
    if count > settings.tenant_max_uploads_per_min:
        raise TooManyRequests(
            f"tenant {tenant!r} sent {count} uploads this minute, over its limit of "
            f"{settings.tenant_max_uploads_per_min}",
            f"retry in {left_s:.0f} s; the operator sets JAXPORT_TENANT_MAX_UPLOADS_PER_MIN",
            retry_after_s=left_s)
    if store.active_count(tenant) >= settings.tenant_max_active_jobs:
        raise _too_many_active(tenant, settings)


def _too_many_active(tenant: str, settings: Settings) -> TooManyRequests:
    return TooManyRequests(
        f"tenant {tenant!r} has {settings.tenant_max_active_jobs} jobs queued or running, its limit",
        "wait for one to finish (or cancel one with DELETE /v1/jobs/{id}); the operator sets "
        "JAXPORT_TENANT_MAX_ACTIVE_JOBS", retry_after_s=ACTIVE_RETRY_AFTER_S)


async def _create_job(request: Request, job_id: str, tenant: str, upload: Upload,
                      options: dict) -> Response:
    """Record the job and queue it, or finish it at once from the cache."""
    settings, store, storage = request.app.state.settings, _store(request), _storage(request)
    upload_info = {"sha256": upload.sha256, "bytes": upload.size, "filename": upload.filename,
                   "key": f"uploads/{job_id}/{upload.path.name}"}
    limits = {"timeout_s": settings.job_timeout_s, "max_memory_mb": settings.job_max_memory_mb}
    record = new_record(job_id, tenant, options, upload_info, limits)
    cached = await run_in_threadpool(store.cached_job, tenant, upload.sha256, options)
    if cached is not None:
        await run_in_threadpool(_answer_from_cache, store, storage, record, cached)
        metrics.JOBS_SUBMITTED.labels("cached").inc()
    else:
        if not await run_in_threadpool(store.reserve_slot, tenant, job_id,
                                       settings.tenant_max_active_jobs):
            raise _too_many_active(tenant, settings)
        try:
            await run_in_threadpool(storage.put_file, upload_info["key"], upload.path)
            await run_in_threadpool(store.create, record)
        except BaseException:
            await run_in_threadpool(store.release_slot, tenant, job_id)
            raise
        try:
            await run_in_threadpool(enqueue, job_id)
        except Exception as exc:
            await run_in_threadpool(store.delete, record)
            await run_in_threadpool(storage.delete_prefix, f"uploads/{job_id}/")
            raise ServiceUnavailable(f"the job queue is unavailable: {exc}"[:300],
                                     "retry in a moment", retry_after_s=5) from exc
        metrics.JOBS_SUBMITTED.labels("queued").inc()
    return _job_response(record, 202)


def check_archive(path: Path) -> None:
    """The engine's cheap checks. A hostile archive can make a library raise what the engine
    did not foresee; the client still gets a 4xx (and the log the traceback to fix it)."""
    try:
        inspect_archive(path)
    except JaxportError:
        raise
    except Exception as exc:
        log.exception("inspect_archive raised %s on an upload", type(exc).__name__)
        raise ArchiveError(f"the archive could not be read: {type(exc).__name__}: {exc}"[:300],
                           "re-create the archive with standard zip or tar.gz tools") from None


async def _replay(request: Request, job_id: str, tenant: str) -> Response:
    record = await _get_owned(request, job_id, tenant)
    metrics.JOBS_SUBMITTED.labels("replayed").inc()
    return _job_response(record, 202, **{"Idempotent-Replayed": "true"})


def _answer_from_cache(store: JobStore, storage: Storage, record: JobRecord, cached: JobRecord) -> None:
    """Finish `record` at once with copies of `cached`'s artifacts (no conversion)."""
    record.update(reuse_result(storage, cached, record["id"], "answered from an identical earlier job"))
    store.create(record)


@router.get("", summary="List your jobs, newest first")
async def list_jobs(request: Request, tenant: Tenant,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None) -> dict:
    records, next_cursor = await run_in_threadpool(_store(request).list, tenant, limit, cursor)
    return {"jobs": [public_view(r) for r in records], "next_cursor": next_cursor}


@router.get("/{job_id}", summary="A job's status, progress, results and artifacts")
async def get_job(request: Request, job_id: str, tenant: Tenant) -> dict:
    return public_view(await _get_owned(request, job_id, tenant))


@router.get("/{job_id}/events", summary="Server-sent events: the job record each time it changes")
async def job_events(request: Request, job_id: str, tenant: Tenant) -> StreamingResponse:
    await _get_owned(request, job_id, tenant)
    return StreamingResponse(_event_stream(request, job_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _event_stream(request: Request, job_id: str) -> AsyncIterator[str]:
    pubsub = request.app.state.aredis.pubsub()
    await pubsub.subscribe(events_channel(job_id))
    try:  # subscribed first, then read: no change can fall between the two
        try:
            record = await run_in_threadpool(_store(request).get, job_id)
        except JobNotFound:
            return
        view = public_view(record)
        yield _sse(view)
        while view["status"] not in TERMINAL:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=SSE_KEEPALIVE_S)
            if message is None:  # quiet for a while: still there?
                try:
                    await run_in_threadpool(_store(request).get, job_id)
                except JobNotFound:
                    return
                yield ": keepalive\n\n"
                continue
            view = json.loads(message["data"])
            yield _sse(view)
    finally:
        await asyncio.shield(pubsub.aclose())


def _sse(view: dict) -> str:
    return f"event: job\ndata: {json.dumps(view)}\n\n"


@router.get("/{job_id}/artifacts/{name}", summary="Download an artifact (Range, or 302 to a presigned URL)",
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {}, 302: {}, 416: {}})
async def get_artifact(request: Request, job_id: str, name: str, tenant: Tenant) -> Response:
    record = await _get_owned(request, job_id, tenant)
    if name not in ARTIFACT_NAMES:
        raise NotFound(f"unknown artifact {name!r}", f"artifacts: {', '.join(ARTIFACT_NAMES)}")
    if name not in {a["name"] for a in record["artifacts"]}:
        raise NotFound(f"job {job_id} has no {name} (status {record['status']})",
                       "wait for the job to finish; see its artifacts list")
    try:
        return await run_in_threadpool(artifact_response, _storage(request),
                                       artifact_key(job_id, name), name,
                                       request.headers.get("range"))
    except ObjectNotFound:
        raise NotFound(f"artifact {name} of job {job_id} is gone from storage") from None


@router.get("/{job_id}/tfjs/{path:path}", summary="One file of the job's TF.js model",
            responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}})
async def get_tfjs_file(request: Request, job_id: str, path: str, tenant: Tenant) -> Response:
    """`path` is a member of `tfjs.zip` (`model.json`, a weight shard, or `<function>/…` for a
    job with several functions), so `tf.loadGraphModel(".../tfjs/model.json")` finds its shards.
    Any other path is a 404."""
    record = await _get_owned(request, job_id, tenant)
    if "tfjs.zip" not in {a["name"] for a in record["artifacts"]}:
        raise NotFound(f"job {job_id} has no TF.js model (status {record['status']})",
                       "wait for the job to finish; submit it with the tfjs target")
    try:
        chunks, size = await run_in_threadpool(zip_member, _storage(request),
                                               artifact_key(job_id, "tfjs.zip"), path)
    except ObjectNotFound:
        raise NotFound(f"artifact tfjs.zip of job {job_id} is gone from storage") from None
    except KeyError:
        raise NotFound(f"the TF.js model of job {job_id} has no file {path!r}",
                       "start from model.json (or <function>/model.json)") from None
    return StreamingResponse(chunks, media_type=media_type(path), headers={"Content-Length": str(size)})


@router.delete("/{job_id}", summary="Cancel a queued or running job; delete a finished one",
               responses={200: {"description": "canceled"}, 204: {"description": "deleted"}})
async def delete_job(request: Request, job_id: str, tenant: Tenant) -> Response:
    store, storage = _store(request), _storage(request)
    record = await _get_owned(request, job_id, tenant)
    if record["status"] not in TERMINAL:
        canceled = await run_in_threadpool(store.update, job_id, {
            "status": CANCELED, "stage": "canceled", "message": "canceled by the client"})
        if canceled is not None:
            await run_in_threadpool(storage.delete_prefix, f"uploads/{job_id}/")
            return JSONResponse(public_view(canceled))
        record = await _get_owned(request, job_id, tenant)  # it finished meanwhile
    await run_in_threadpool(storage.delete_prefix, f"jobs/{job_id}/")
    await run_in_threadpool(storage.delete_prefix, f"uploads/{job_id}/")
    await run_in_threadpool(store.delete, record)
    return Response(status_code=204)
