"""`POST /v1/inspect` on a worker: the API stores the upload and queues `INSPECT_TASK`; a warm
worker (TensorFlow, JAX and Keras already imported) runs `jaxport.inspection.inspect_file` in an
isolated child under `INSPECT_TIMEOUT_S` and the job memory limit, and pushes the answer on the
Redis list `reply_key(request_id)`, where the API waits for it (BLPOP).

The answer is JSON: `{"report": {...}}`, or `{"error": {code, message, hint}, "status": int}`
(the HTTP status of the error). The upload is deleted either way; an answer nobody collects
expires after `REPLY_TTL_S`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from jaxport.errors import JaxportError
from jaxport.storage import Storage
from service.config import Settings

INSPECT_TASK = "jaxport.inspect"
INSPECT_TIMEOUT_S = 120
REPLY_TTL_S = 300


def reply_key(request_id: str) -> str:
    return f"jaxport:inspect:{request_id}"


def upload_key(request_id: str, filename: str) -> str:
    return f"inspect/{request_id}/{filename}"


def run_inspection(request_id: str, key: str, function: str | None, trusted: bool,
                   redis_client, storage: Storage, settings: Settings) -> None:
    """Inspect the stored upload `key` and push the answer for `request_id`."""
    from workers.isolation import Limits, run_isolated

    try:
        with tempfile.TemporaryDirectory(prefix="jaxport-inspect-") as tmp:
            archive = Path(tmp) / key.rsplit("/", 1)[-1]
            storage.get_file(key, archive)

            def work_in_child(send) -> dict:
                from jaxport.inspection import inspect_file

                return inspect_file(archive, function, trusted=trusted)

            limits = Limits(timeout_s=INSPECT_TIMEOUT_S, max_memory_mb=settings.job_max_memory_mb)
            answer = {"report": run_isolated(work_in_child, limits, on_progress=lambda m: None,
                                             keep_going=lambda: True)}
    except JaxportError as exc:
        answer = {"error": exc.to_dict(), "status": exc.http_status}
    finally:
        storage.delete_prefix(f"inspect/{request_id}/")
    redis_client.rpush(reply_key(request_id), json.dumps(answer))
    redis_client.expire(reply_key(request_id), REPLY_TTL_S)
