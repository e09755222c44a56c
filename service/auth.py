"""Bearer API keys → tenants. Keys are held only as sha256 digests and compared in constant
time; with no keys configured every caller is the tenant `local` (and the server binds to
127.0.0.1 only — see service.commands)."""

from __future__ import annotations

import hmac

from fastapi import Request

from jaxport.errors import JaxportError
from service.config import hash_key

LOCAL_TENANT = "local"


class Unauthorized(JaxportError):
    code = "unauthorized"
    http_status = 401


def tenant_for(request: Request) -> str:
    """FastAPI dependency: the caller's tenant. Raises Unauthorized."""
    keys: dict[str, str] = request.app.state.settings.api_keys
    if not keys:
        return LOCAL_TENANT
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key", "send the header `Authorization: Bearer <key>`")
    digest = hash_key(token.strip())
    tenant = None
    for known, owner in keys.items():  # every entry is compared: no early exit on a match
        if hmac.compare_digest(known, digest):
            tenant = owner
    if tenant is None:
        raise Unauthorized("unknown API key", "check the key with your operator")
    return tenant
