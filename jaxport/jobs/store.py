"""Job records, per-tenant listing, progress events, idempotency keys, the result cache, and
worker leases — all in Redis.

Keys (prefix `jaxport:`): `job:<id>` the JSON record · `tenant:<t>:jobs` zset seq→id ·
`events:<id>` pub/sub channel of public records · `idem:<t>:<sha(key)>` → id ·
`cache:<t>:<upload sha>:<options sha>` → id of a succeeded job · `lease:<id>` → worker token
while a worker runs the job · `active` set of non-terminal job ids (scanned by the reaper) ·
`tenant:<t>:active` the same per tenant (the active-jobs limit) · `finished` zset id→time it
became terminal (the retention sweeper) · `rate:<t>:<minute>` uploads counted per minute ·
`inflight:<t>:<upload sha>:<options sha>` → the job converting those bytes and options ·
`worker:<hostname>` heartbeat of each ready worker.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from jaxport.jobs.record import RUNNING, TERMINAL, JobRecord, public_view

P = "jaxport:"
IDEMPOTENCY_TTL_S = 24 * 3600
# Take an active-job slot for a tenant unless it holds ARGV[2] already.
_RESERVE = ("if redis.call('sismember', KEYS[1], ARGV[1]) == 1 then return 1 end "
            "if redis.call('scard', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end "
            "redis.call('sadd', KEYS[1], ARGV[1]) return 1")
_DEL_IF_EQUAL = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                 "return redis.call('del', KEYS[1]) else return 0 end")


class JobNotFound(KeyError):
    """No record with that id (or not the caller's)."""


def options_digest(options: dict) -> str:
    """The result cache's digest of a job's options and of the jaxport version that ran it.

    The version is part of it so that a release with a fixed bug never serves the verdicts
    (or artifacts) of the release before it.
    """
    import jaxport

    keyed = {"options": options, "jaxport_version": jaxport.__version__}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:32]


def events_channel(job_id: str) -> str:
    return f"{P}events:{job_id}"


class JobStore:
    """Sync access to job state. Every record change is published on the job's channel."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @classmethod
    def from_url(cls, url: str) -> "JobStore":
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                                        health_check_interval=30))

    # records ------------------------------------------------------------------------------
    def create(self, record: JobRecord) -> None:
        seq = self.r.incr(f"{P}seq")
        pipe = self.r.pipeline()
        pipe.set(f"{P}job:{record['id']}", json.dumps(record))
        pipe.zadd(f"{P}tenant:{record['tenant']}:jobs", {record["id"]: seq})
        if record["status"] not in TERMINAL:
            pipe.sadd(f"{P}active", record["id"])
            pipe.sadd(f"{P}tenant:{record['tenant']}:active", record["id"])
        else:
            pipe.zadd(f"{P}finished", {record["id"]: time.time()})
        pipe.execute()
        self._publish(record)

    def get(self, job_id: str, tenant: str | None = None) -> JobRecord:
        """The record; raises JobNotFound if missing or owned by another tenant."""
        raw = self.r.get(f"{P}job:{job_id}")
        if raw is None:
            raise JobNotFound(job_id)
        record = json.loads(raw)
        if tenant is not None and record["tenant"] != tenant:
            raise JobNotFound(job_id)
        return record

    def update(self, job_id: str, changes: dict[str, Any] | Callable[[JobRecord], dict | None],
               *, allow_terminal: bool = False) -> JobRecord | None:
        """Apply `changes` (a dict, or a function of the record returning one) atomically.

        Returns the new record, or None when the job is gone, or already terminal and
        `allow_terminal` is false (a canceled job stays canceled), or the function returned None.
        """
        key = f"{P}job:{job_id}"

        def apply(pipe: redis.client.Pipeline) -> JobRecord | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            record = json.loads(raw)
            if record["status"] in TERMINAL and not allow_terminal:
                return None
            delta = changes(record) if callable(changes) else changes
            if delta is None:
                return None
            record.update(delta, updated_at=time.time())
            pipe.multi()
            pipe.set(key, json.dumps(record))
            if record["status"] in TERMINAL:
                pipe.srem(f"{P}active", job_id)
                pipe.srem(f"{P}tenant:{record['tenant']}:active", job_id)
                pipe.zadd(f"{P}finished", {job_id: time.time()}, nx=True)
            return record

        record = self.r.transaction(apply, key, value_from_callable=True)
        if record is not None:
            self._publish(record)
        return record

    def delete(self, record: JobRecord) -> None:
        pipe = self.r.pipeline()
        pipe.delete(f"{P}job:{record['id']}")
        pipe.zrem(f"{P}tenant:{record['tenant']}:jobs", record["id"])
        pipe.srem(f"{P}active", record["id"])
        pipe.srem(f"{P}tenant:{record['tenant']}:active", record["id"])
        pipe.zrem(f"{P}finished", record["id"])
        pipe.execute()

    def list(self, tenant: str, limit: int, cursor: str | None) -> tuple[list[JobRecord], str | None]:
        """Newest first; `cursor` is the opaque value a previous page returned (None = start)."""
        key = f"{P}tenant:{tenant}:jobs"
        top = f"({int(cursor)}" if cursor else "+inf"
        rows = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=limit + 1, withscores=True)
        page, more = rows[:limit], len(rows) > limit
        records = []
        for job_id, _ in page:
            raw = self.r.get(f"{P}job:{job_id.decode()}")
            if raw is not None:
                records.append(json.loads(raw))
        return records, (str(int(page[-1][1])) if more and page else None)

    def active_ids(self) -> list[str]:
        return [m.decode() for m in self.r.smembers(f"{P}active")]

    def finished_before(self, when: float, limit: int = 500) -> list[str]:
        """Ids of jobs that became terminal before `when` (oldest first): the expired ones."""
        return [m.decode() for m in self.r.zrangebyscore(f"{P}finished", "-inf", when,
                                                         start=0, num=limit)]

    def forget(self, job_id: str) -> None:
        """Drop `job_id` from the indexes when its record is already gone."""
        self.r.zrem(f"{P}finished", job_id)
        self.r.srem(f"{P}active", job_id)

    # tenant limits ------------------------------------------------------------------------
    def active_count(self, tenant: str) -> int:
        """Queued + running jobs of `tenant`."""
        return int(self.r.scard(f"{P}tenant:{tenant}:active"))

    def reserve_slot(self, tenant: str, job_id: str, limit: int) -> bool:
        """Count `job_id` among `tenant`'s active jobs unless it already has `limit` of them."""
        return bool(self.r.eval(_RESERVE, 1, f"{P}tenant:{tenant}:active", job_id, limit))

    def release_slot(self, tenant: str, job_id: str) -> None:
        """Undo `reserve_slot` (the submission failed before the job was recorded)."""
        self.r.srem(f"{P}tenant:{tenant}:active", job_id)

    def count_upload(self, tenant: str, window_s: int = 60) -> tuple[int, float]:
        """Count one upload of `tenant` in the current `window_s` window; return the count so far
        and the seconds left in the window."""
        now = time.time()
        window = int(now // window_s)
        key = f"{P}rate:{tenant}:{window}"
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * window_s)
        count, _ = pipe.execute()
        return int(count), (window + 1) * window_s - now

    def _publish(self, record: JobRecord) -> None:
        self.r.publish(events_channel(record["id"]), json.dumps(public_view(record)))

    # idempotency and cache ----------------------------------------------------------------
    @staticmethod
    def _idem_key(tenant: str, key: str) -> str:
        return f"{P}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim_idempotency_key(self, tenant: str, key: str, job_id: str) -> str:
        """Bind `key` to `job_id` unless already bound; return the job id the key names."""
        name = self._idem_key(tenant, key)
        if self.r.set(name, job_id, nx=True, ex=IDEMPOTENCY_TTL_S):
            return job_id
        bound = self.r.get(name)
        return bound.decode() if bound else job_id

    def release_idempotency_key(self, tenant: str, key: str, job_id: str) -> None:
        """Unbind `key` if it still names `job_id` (the submission failed after claiming)."""
        self.r.eval(_DEL_IF_EQUAL, 1, self._idem_key(tenant, key), job_id)

    def idempotent_job(self, tenant: str, key: str) -> str | None:
        bound = self.r.get(self._idem_key(tenant, key))
        return bound.decode() if bound else None

    def _cache_key(self, tenant: str, upload_sha: str, options: dict) -> str:
        return f"{P}cache:{tenant}:{upload_sha}:{options_digest(options)}"

    def cached_job(self, tenant: str, upload_sha: str, options: dict) -> JobRecord | None:
        """A succeeded job of this tenant for the same bytes and options, if one still exists."""
        job_id = self.r.get(self._cache_key(tenant, upload_sha, options))
        if job_id is None:
            return None
        try:
            record = self.get(job_id.decode(), tenant)
        except JobNotFound:
            return None
        return record if record["status"] == "succeeded" else None

    def remember_result(self, record: JobRecord, ttl_s: int | None = None) -> None:
        """Let later identical uploads be answered from `record` (for `ttl_s`, its retention)."""
        self.r.set(self._cache_key(record["tenant"], record["upload"]["sha256"], record["options"]),
                   record["id"], ex=ttl_s)

    def _inflight_key(self, record: JobRecord) -> str:
        return (f"{P}inflight:{record['tenant']}:{record['upload']['sha256']}:"
                f"{options_digest(record['options'])}")

    def claim_inflight(self, record: JobRecord) -> str:
        """Mark `record` as the one job converting its bytes and options, unless another running
        job already is; return the id of the job that is (`record`'s own id when claimed)."""
        key = self._inflight_key(record)

        def claim(pipe: redis.client.Pipeline) -> str:
            holder = pipe.get(key)
            holder = holder.decode() if holder else None
            if holder and holder != record["id"]:
                try:
                    if self.get(holder)["status"] == RUNNING:
                        return holder
                except JobNotFound:
                    pass
            pipe.multi()
            pipe.set(key, record["id"])
            return record["id"]

        return self.r.transaction(claim, key, value_from_callable=True)

    def release_inflight(self, record: JobRecord) -> None:
        """Unmark `record` (it finished) if it is still the one marked."""
        self.r.eval(_DEL_IF_EQUAL, 1, self._inflight_key(record), record["id"])

    # worker leases ------------------------------------------------------------------------
    def acquire_lease(self, job_id: str, token: str, ttl_s: float) -> bool:
        return bool(self.r.set(f"{P}lease:{job_id}", token, nx=True, px=int(ttl_s * 1000)))

    def renew_lease(self, job_id: str, token: str, ttl_s: float) -> bool:
        """Extend our lease; False when it expired or another worker holds it."""
        script = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                  "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")
        return bool(self.r.eval(script, 1, f"{P}lease:{job_id}", token, int(ttl_s * 1000)))

    def release_lease(self, job_id: str, token: str) -> None:
        self.r.eval(_DEL_IF_EQUAL, 1, f"{P}lease:{job_id}", token)

    def lease_held(self, job_id: str) -> bool:
        return bool(self.r.exists(f"{P}lease:{job_id}"))

    def claim_requeue(self, job_id: str, attempt: int, ttl_s: float) -> bool:
        """True for exactly one caller per (job, attempt): who re-enqueues an orphaned job."""
        return bool(self.r.set(f"{P}requeue:{job_id}:{attempt}", "1", nx=True,
                               px=int(ttl_s * 1000)))

    def worker_heartbeat(self, hostname: str, ttl_s: float) -> None:
        """Say that worker `hostname` is up and warm, for `ttl_s` seconds."""
        self.r.set(f"{P}worker:{hostname}", str(time.time()), px=int(ttl_s * 1000))

    def live_workers(self) -> list[str]:
        return sorted(k.decode()[len(f"{P}worker:"):] for k in self.r.scan_iter(f"{P}worker:*"))

    def ping(self) -> None:
        self.r.ping()
