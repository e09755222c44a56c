"""Server configuration from the environment, shared by the API and workers."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from jaxport.errors import JaxportError
from jaxport.jobs import DEFAULT_REDIS_URL
from jaxport.limits import DEFAULT_MAX_FILE_MB
from jaxport.storage import DEFAULT_STORAGE_URL
from jaxport.verify.kept import KEPT_RUNTIMES


class ConfigError(JaxportError):
    code = "bad_config"
    http_status = 500


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(text: str, where: str) -> dict[str, str]:
    """`tenant:key` pairs separated by commas or newlines → {sha256(key): tenant}."""
    keys: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        tenant, sep, key = item.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise ConfigError(f"{where}: expected tenant:key, got an entry without both parts")
        keys[hash_key(key.strip())] = tenant.strip()
    return keys


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the API and the workers read from the environment."""

    redis_url: str = DEFAULT_REDIS_URL
    storage_url: str = DEFAULT_STORAGE_URL
    api_keys: dict[str, str] = field(default_factory=dict)  # sha256(key) -> tenant
    max_upload_bytes: int = 2 * 1024**3
    job_timeout_s: int = 1800
    job_max_memory_mb: int = 8192
    job_max_file_mb: int = DEFAULT_MAX_FILE_MB  # largest file a conversion may write
    allow_trusted_code: bool = False
    tenant_max_active_jobs: int = 16  # queued + running jobs per tenant
    tenant_max_uploads_per_min: int = 60
    job_ttl_s: int = 7 * 24 * 3600  # a finished job's record and artifacts are kept this long
    worker_concurrency: int = 1  # jobs a worker converts at once (its pool processes)
    # JS runtimes each pool process keeps for its jobs (jaxport.verify.kept)
    kept_runtimes: tuple[str, ...] = KEPT_RUNTIMES

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        keys = parse_api_keys(env.get("JAXPORT_API_KEYS", ""), "JAXPORT_API_KEYS")
        keys_file = env.get("JAXPORT_API_KEYS_FILE", "").strip()
        if keys_file:
            try:
                text = Path(keys_file).read_text()
            except OSError as exc:
                raise ConfigError(f"JAXPORT_API_KEYS_FILE {keys_file}: {exc.strerror}") from None
            keys.update(parse_api_keys(text, keys_file))
        return cls(
            redis_url=env.get("JAXPORT_REDIS_URL") or DEFAULT_REDIS_URL,
            storage_url=env.get("JAXPORT_STORAGE_URL") or DEFAULT_STORAGE_URL,
            api_keys=keys,
            max_upload_bytes=_int_env("JAXPORT_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            job_timeout_s=_int_env("JAXPORT_JOB_TIMEOUT_S", cls.job_timeout_s),
            job_max_memory_mb=_int_env("JAXPORT_JOB_MAX_MEMORY_MB", cls.job_max_memory_mb),
            job_max_file_mb=_int_env("JAXPORT_JOB_MAX_FILE_MB", cls.job_max_file_mb),
            allow_trusted_code=env.get("JAXPORT_ALLOW_TRUSTED_CODE", "0").strip() == "1",
            tenant_max_active_jobs=_int_env("JAXPORT_TENANT_MAX_ACTIVE_JOBS",
                                            cls.tenant_max_active_jobs),
            tenant_max_uploads_per_min=_int_env("JAXPORT_TENANT_MAX_UPLOADS_PER_MIN",
                                                cls.tenant_max_uploads_per_min),
            job_ttl_s=_int_env("JAXPORT_JOB_TTL_S", cls.job_ttl_s),
            worker_concurrency=_int_env("JAXPORT_WORKER_CONCURRENCY", cls.worker_concurrency),
            kept_runtimes=_kept_runtimes_env(),
        )


def _kept_runtimes_env() -> tuple[str, ...]:
    """`JAXPORT_KEPT_RUNTIMES`: a comma list of tfjs, litertjs, or none; all when unset."""
    raw = os.environ.get("JAXPORT_KEPT_RUNTIMES")
    if raw is None:
        return KEPT_RUNTIMES
    names = tuple(n.strip() for n in raw.split(",") if n.strip() and n.strip() != "none")
    unknown = sorted(set(names) - set(KEPT_RUNTIMES))
    if unknown:
        raise ConfigError(f"JAXPORT_KEPT_RUNTIMES names {', '.join(unknown)}; expected a comma list "
                          f"of {', '.join(KEPT_RUNTIMES)}, or none")
    return names
