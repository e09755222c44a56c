"""Job state shared by the API and the workers: records, events, idempotency, cache, leases."""

from jaxport.jobs.record import (ARTIFACT_NAMES, CANCELED, FAILED, PARTIAL, QUEUED, RUNNING,
                                 SUCCEEDED, TERMINAL, JobRecord, artifact_key, new_job_id,
                                 new_record, public_view, report_fields)
from jaxport.jobs.store import JobNotFound, JobStore, events_channel

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

__all__ = [
    "ARTIFACT_NAMES", "CANCELED", "DEFAULT_REDIS_URL", "FAILED", "PARTIAL", "QUEUED", "RUNNING",
    "SUCCEEDED", "TERMINAL", "JobNotFound", "JobRecord", "JobStore", "artifact_key",
    "events_channel", "new_job_id", "new_record", "public_view", "report_fields",
]
