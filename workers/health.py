"""`python -m workers.health`: exit 0 when a warm worker on this host has a live heartbeat in
Redis (the container health check of docker-compose's `worker` service)."""

from __future__ import annotations

import socket
import sys

from jaxport.jobs import JobStore
from service.config import Settings


def main() -> int:
    host = socket.gethostname()
    try:
        workers = JobStore.from_url(Settings.from_env().redis_url).live_workers()
    except Exception as exc:  # unreachable Redis = unhealthy, said plainly
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    mine = [w for w in workers if w.endswith(f"@{host}")]
    print(f"live workers on {host}: {mine}" if mine else f"unhealthy: no live worker on {host}")
    return 0 if mine else 1


if __name__ == "__main__":
    sys.exit(main())
