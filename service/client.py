"""A small HTTP client of the jaxport API (used by the CLI's client commands and the benchmark)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from jaxport.jobs.record import TERMINAL


class ClientError(Exception):
    """The server answered with an error (its code, message and hint), or could not be reached."""

    def __init__(self, message: str, hint: str = "", code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.hint, self.code, self.status = hint, code, status


class Client:
    """Talks to one jaxport server with an optional bearer key."""

    def __init__(self, server: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=10.0))

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "", "message": response.text[:200], "hint": ""}
        raise ClientError(f"{response.status_code} {error.get('message')}", error.get("hint", ""),
                          error.get("code", ""), response.status_code)

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            return self._check(self.http.request(method, url, **kwargs))
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}",
                              "is the server up? (`jaxport up`)") from None

    def submit(self, archive: Path, options: dict | None = None,
               idempotency_key: str | None = None) -> dict:
        """Upload `archive` (streamed from disk) and return the job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with open(archive, "rb") as fh:
            data = {"options": json.dumps(options)} if options else {}
            return self._request("POST", "/v1/jobs", files={"file": (archive.name, fh)},
                                 data=data, headers=headers, timeout=None).json()

    def jobs(self, limit: int = 50, cursor: str | None = None) -> dict:
        """One page of the caller's jobs, newest first: {"jobs": [...], "next_cursor"}."""
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return self._request("GET", "/v1/jobs", params=params).json()

    def delete(self, job_id: str) -> dict | None:
        """Cancel a queued or running job (its record), or delete a finished one (None)."""
        response = self._request("DELETE", f"/v1/jobs/{job_id}")
        return None if response.status_code == 204 else response.json()

    def inspect(self, archive: Path, function: str | None = None) -> dict:
        """`POST /v1/inspect`: what the archive holds and what each target can take."""
        with open(archive, "rb") as fh:
            data = {"function": function} if function else {}
            return self._request("POST", "/v1/inspect", files={"file": (archive.name, fh)},
                                 data=data, timeout=None).json()

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def events(self, job_id: str) -> Iterator[dict]:
        """The job record each time it changes (server-sent events), until it is terminal."""
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(
                60.0, connect=10.0)) as response:
            self._check(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[len("data: "):])

    def wait(self, job_id: str, on_change: Callable[[dict], None] = lambda job: None,
             poll_s: float = 1.0) -> dict:
        """Follow the job to a terminal status over SSE; poll if the stream breaks."""
        job = self.job(job_id)
        try:
            for job in self.events(job_id):
                on_change(job)
        except (httpx.TransportError, ValueError):
            pass
        while job["status"] not in TERMINAL:
            time.sleep(poll_s)
            job = self.job(job_id)
            on_change(job)
        return job

    def download(self, job_id: str, name: str, dest: Path) -> None:
        """Stream an artifact to `dest` (following a presigned-URL redirect)."""
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/artifacts/{name}",
                                  follow_redirects=True, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                with open(dest, "wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise ClientError(f"download of {name} failed: {exc}") from None
