"""Every error the API answers is JSON `{"error": {"code", "message", "hint"}}`.

`JaxportError`s carry their own status; FastAPI's validation and HTTP errors are mapped; any
other exception is our bug: logged with its traceback and answered as a JSON 500.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jaxport.errors import JaxportError

log = logging.getLogger("jaxport.service")


class NotFound(JaxportError):
    code = "not_found"
    http_status = 404


class ServiceUnavailable(JaxportError):
    """Something the service needs is missing or cannot be reached; with `retry_after_s`, the
    answer carries `Retry-After` (the client may retry then)."""

    code = "service_unavailable"
    http_status = 503

    def __init__(self, message: str, hint: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message, hint)
        self.retry_after_s = None if retry_after_s is None else max(1, round(retry_after_s))


class TooManyRequests(ServiceUnavailable):
    """A tenant is over one of its limits: 429 with `Retry-After`."""

    code = "too_many_requests"
    http_status = 429


def error_response(status: int, code: str, message: str, hint: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "hint": hint}},
                        status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""

    @app.exception_handler(JaxportError)
    async def _jaxport(request: Request, exc: JaxportError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc)
        body = exc.to_dict()
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else {}
        if getattr(exc, "retry_after_s", None):
            headers["Retry-After"] = str(exc.retry_after_s)
        return error_response(exc.http_status, body["code"], body["message"], body["hint"], headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "bad_request", f"{where}: {first.get('msg', 'invalid')}",
                              "see /docs for the request format")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"),
                              str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("%s %s: Redis unavailable: %s", request.method, request.url.path, exc)
        return error_response(503, ServiceUnavailable.code, "job store unavailable",
                              "retry in a moment; the operator should check JAXPORT_REDIS_URL",
                              {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error",
                              "this is a bug in jaxport; the server log has the details")
