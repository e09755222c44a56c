"""Answering a job with the result of an identical earlier (or concurrent) one: the same bytes,
options and jaxport version, so the same artifacts and verdicts, copied rather than converted."""

from __future__ import annotations

from typing import Any

from jaxport.jobs.record import SUCCEEDED, JobRecord, artifact_key, report_fields
from jaxport.storage import Storage


def reuse_result(storage: Storage, source: JobRecord, job_id: str, message: str) -> dict[str, Any]:
    """Copy succeeded job `source`'s artifacts to job `job_id`; return the record changes that
    finish `job_id` with `source`'s report (`cached_from` names it)."""
    for artifact in source["artifacts"]:
        storage.copy(artifact_key(source["id"], artifact["name"]),
                     artifact_key(job_id, artifact["name"]))
    return {"status": SUCCEEDED, "stage": "done", "progress": 1.0, "cached_from": source["id"],
            **report_fields(source), "artifacts": source["artifacts"], "error": None,
            "message": message}
