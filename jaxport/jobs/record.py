"""The job record: what a job is, its statuses, and the view a client sees.

A record is a JSON object kept in Redis. Fields: id, tenant, status, stage, progress, message,
created_at, updated_at, options, upload {sha256, bytes, filename, key}, limits {timeout_s,
max_memory_mb}, the report.json sections of `REPORT_FIELDS` (targets: per-target results,
functions, inputs, reference, warnings, timings: seconds per stage, worker stages included),
artifacts [{name, bytes}], error {code, message, hint} | null, cached_from, attempts, worker.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from jaxport.options import TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS

QUEUED, RUNNING, SUCCEEDED, PARTIAL, FAILED, CANCELED = (
    "queued", "running", "succeeded", "partial", "failed", "canceled")
TERMINAL = frozenset({SUCCEEDED, PARTIAL, FAILED, CANCELED})
# The quantized artifacts (`quantize`, `tfjs_quantize`) are served beside the float ones.
QUANTIZED_ARTIFACT_NAMES = (*(f"model.{m}.tflite" for m in TFLITE_QUANTIZATIONS),
                            *(f"tfjs-{m}.zip" for m in TFJS_QUANTIZATIONS))
ARTIFACT_NAMES = ("savedmodel.zip", "model.tflite", "tfjs.zip", "onnx.zip", "report.json",
                  "bundle.zip", *QUANTIZED_ARTIFACT_NAMES)

JobRecord = dict[str, Any]
# report.json sections a finished job's record carries (and the API shows), with their empty values.
REPORT_FIELDS: dict[str, Any] = {"targets": {}, "functions": {}, "inputs": {}, "reference": {},
                                 "warnings": [], "timings": {}}


def new_job_id() -> str:
    """A URL-safe, unguessable job id."""
    return "j_" + secrets.token_hex(12)


def new_record(job_id: str, tenant: str, options: dict, upload: dict, limits: dict) -> JobRecord:
    now = time.time()
    return {
        "id": job_id, "tenant": tenant, "status": QUEUED, "stage": "queued", "progress": 0.0,
        "message": "", "created_at": now, "updated_at": now, "options": options,
        "upload": upload, "limits": limits, **report_fields({}), "artifacts": [],
        "error": None, "cached_from": None, "attempts": 0, "worker": None,
    }


def report_fields(source: dict) -> dict[str, Any]:
    """The `REPORT_FIELDS` of a report or record (empty where it has none, as older records)."""
    return {k: source.get(k, type(empty)()) for k, empty in REPORT_FIELDS.items()}


def artifact_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


def public_view(record: JobRecord, base_url: str = "") -> dict[str, Any]:
    """The record as the API returns it: no tenant or storage keys, artifact URLs added."""
    return {
        "id": record["id"],
        "status": record["status"],
        "stage": record["stage"],
        "progress": record["progress"],
        "message": record["message"],
        "created_at": _iso(record["created_at"]),
        "updated_at": _iso(record["updated_at"]),
        "name": record["options"].get("name"),
        "options": {k: v for k, v in record["options"].items() if k != "trusted"},
        "upload": {k: record["upload"].get(k) for k in ("sha256", "bytes", "filename")},
        **report_fields(record),
        "artifacts": [
            {**a, "url": f"{base_url}/v1/jobs/{record['id']}/artifacts/{a['name']}"}
            for a in record["artifacts"]
        ],
        "error": record["error"],
        "cached_from": record["cached_from"],
        "attempts": record["attempts"],
        "worker": record["worker"],
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
