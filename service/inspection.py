"""`POST /v1/inspect`: what an archive holds and what each target can take, without converting.

The upload gets the same checks as a job's (size, form, archive limits) and is then inspected
by a warm worker (workers.inspection), so the API process never loads user models. The
answer is the same JSON as `jaxport inspect --json`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from jaxport.jobs import new_job_id
from service.errors import ServiceUnavailable, error_response
from service.jobs import Tenant, check_archive
from service.uploads import UploadError, archive_form, receive_upload
from workers.app import enqueue_inspection
from workers.inspection import INSPECT_TIMEOUT_S, reply_key, upload_key

router = APIRouter(prefix="/v1", tags=["inspect"])
WAIT_S = INSPECT_TIMEOUT_S + 30  # a worker's own limit, plus time to pick the task up
BLPOP_S = 2


class InspectUnavailable(ServiceUnavailable):
    """No worker answered in time (all busy converting, or none running)."""

    code = "inspect_unavailable"


async def _wait_reply(aredis, key: str) -> bytes | None:
    """The worker's answer, or None after WAIT_S. Short BLPOPs: each stays under the client's
    socket timeout."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        reply = await aredis.blpop([key], timeout=BLPOP_S)
        if reply is not None:
            return reply[1]
    return None


@router.post("/inspect", summary="Functions, models, primitives and per-target verdict of an archive",
             openapi_extra=archive_form("function", "inspect only this function of the archive"))
async def inspect_archive(request: Request, tenant: Tenant) -> JSONResponse:
    """Answers 200 with the inspection, the archive's own error (4xx) as a conversion would, or
    503 `inspect_unavailable` when no worker answers within the wait."""
    settings, storage = request.app.state.settings, request.app.state.storage
    request_id = new_job_id().replace("j_", "i_", 1)
    tmp = Path(tempfile.mkdtemp(prefix="jaxport-inspect-", dir=request.app.state.upload_dir))
    try:
        upload = await receive_upload(request, tmp, settings.max_upload_bytes)
        unknown = sorted(set(upload.fields) - {"function"})
        if unknown:
            raise UploadError(f"unknown form field(s) {unknown}", "send `file` and optional `function`")
        function = upload.fields.get("function", "").strip() or None
        await run_in_threadpool(check_archive, upload.path)
        key = upload_key(request_id, upload.path.name)
        await run_in_threadpool(storage.put_file, key, upload.path)
    finally:
        await run_in_threadpool(shutil.rmtree, tmp, True)
    try:
        await run_in_threadpool(enqueue_inspection, request_id, key, function,
                                settings.allow_trusted_code)
    except Exception as exc:
        await run_in_threadpool(storage.delete_prefix, f"inspect/{request_id}/")
        raise ServiceUnavailable(f"the job queue is unavailable: {exc}"[:300],
                                 "retry in a moment") from exc
    reply = await _wait_reply(request.app.state.aredis, reply_key(request_id))
    if reply is None:
        raise InspectUnavailable(f"no worker answered within {WAIT_S} s",
                                 "every worker is busy converting (or none runs): retry later, "
                                 "or run `jaxport inspect ARCHIVE` locally")
    answer = json.loads(reply)
    if "error" in answer:
        error = answer["error"]
        return error_response(answer["status"], error["code"], error["message"], error["hint"])
    return JSONResponse(answer["report"])
