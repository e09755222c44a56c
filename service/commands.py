"""The service's commands: `up`, `serve`, `worker` run it; `submit`, `jobs`, `status`,
`download`, `cancel` talk to a running one. `register(subparsers)` adds them to the `jaxport`
CLI (entry point `jaxport.commands` in pyproject.toml); `python -m service <command>` runs them
without it.

Client commands take `--server` (default $JAXPORT_SERVER, else http://127.0.0.1:8000) and
`--api-key` (default $JAXPORT_API_KEY). Exit codes: 0 the job succeeded (or is still queued or
running), 1 it failed, was canceled or is partial, 2 a usage, connection or API error (one
`error:` line and a `hint:`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from jaxport.jobs.record import ARTIFACT_NAMES, CANCELED, FAILED, PARTIAL, TERMINAL
from jaxport.options import ALL_TARGETS

log = logging.getLogger("jaxport.service")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_SERVER = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A problem the user of a command can fix; printed as `error: ...` and `hint: ...` (exit 2)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the service commands to a `jaxport` argparse parser."""
    p = subparsers.add_parser("up", help="API + worker + local Redis + file storage, in one go")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--concurrency", type=int, default=_concurrency(),
                   help="conversions at once (default: JAXPORT_WORKER_CONCURRENCY, else 1)")
    p.set_defaults(run=cmd_up)

    p = subparsers.add_parser("serve", help="the HTTP API alone (reads JAXPORT_* variables)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; without API keys only 127.0.0.1 is allowed")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(run=cmd_serve)

    p = subparsers.add_parser("worker", help="a Celery worker alone (start more to scale out)")
    p.add_argument("--concurrency", type=int, default=_concurrency(),
                   help="pool processes, one job each (default: JAXPORT_WORKER_CONCURRENCY, else 1)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(run=cmd_worker)

    p = _client_parser(subparsers, "submit", "upload an archive to a jaxport server", cmd_submit)
    p.add_argument("archive", type=Path)
    p.add_argument("--wait", action="store_true", help="follow progress until the job ends")
    p.add_argument("-o", "--out", type=Path, help="download and unpack the bundle here (implies --wait)")
    p.add_argument("--targets", help=f"comma-separated subset of {','.join(ALL_TARGETS)}")
    p.add_argument("--no-litertjs", dest="litertjs", action="store_false",
                   help="check the TFLite model in LiteRT only (option litertjs: false)")
    p.add_argument("--options", help="more conversion options as a JSON object")
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")

    p = _client_parser(subparsers, "jobs", "list your jobs on a server, newest first", cmd_jobs)
    p.add_argument("--limit", type=int, default=20, help="at most this many (1..200)")
    p.add_argument("--cursor", help="continue a listing (the `next:` value it printed)")

    p = _client_parser(subparsers, "status", "a job's status and results", cmd_status)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--watch", action="store_true",
                   help="follow the job's event stream (SSE) until it ends")

    p = _client_parser(subparsers, "download", "download a job's artifacts", cmd_download)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("-o", "--out", type=Path,
                   help="unpack the bundle into this directory (default: ./ID), or with "
                        "--artifact the file to write")
    p.add_argument("--artifact", choices=ARTIFACT_NAMES,
                   help="one artifact as it is stored, instead of the unpacked bundle")

    p = _client_parser(subparsers, "cancel", "cancel a queued or running job", cmd_cancel)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--delete", action="store_true",
                   help="a finished job: delete it and its artifacts")


def _client_parser(subparsers: argparse._SubParsersAction, name: str, help: str,
                   run) -> argparse.ArgumentParser:
    """A command that talks to a server: --server, --api-key and --json are common to all."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("--server", default=os.environ.get("JAXPORT_SERVER", DEFAULT_SERVER),
                   help="the API's base URL (default $JAXPORT_SERVER, else %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("JAXPORT_API_KEY"),
                   help="bearer key (default $JAXPORT_API_KEY)")
    p.add_argument("--json", action="store_true",
                   help="print the raw JSON the API answered on stdout instead of tables")
    p.set_defaults(run=_client_command(run))
    return p


def _client_command(run):
    """Wrap a client command: its API, connection and usage errors become exit 2."""
    def wrapped(args: argparse.Namespace) -> int:
        from service.client import ClientError

        try:
            return run(args)
        except (CommandError, ClientError, json.JSONDecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            hint = getattr(exc, "hint", "")
            if hint:
                print(f"hint: {hint}", file=sys.stderr)
            return EXIT_ERROR

    wrapped.command = run
    return wrapped


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.config import Settings

    _setup_logging()
    settings = Settings.from_env()
    host = args.host
    if not settings.auth_enabled and host not in LOCAL_HOSTS:
        log.warning("no API keys (JAXPORT_API_KEYS / JAXPORT_API_KEYS_FILE): binding 127.0.0.1 "
                    "instead of %s; configure keys to serve other machines", host)
        host = "127.0.0.1"
    log.info("jaxport API on http://%s:%d (storage %s, redis %s)", host, args.port,
             settings.storage_url, _redact(settings.redis_url))
    uvicorn.run(create_app(settings), host=host, port=args.port, log_level="info",
                timeout_graceful_shutdown=5)
    return EXIT_OK


def _concurrency() -> int:
    """The default of `--concurrency`: `JAXPORT_WORKER_CONCURRENCY`, else 1 (read leniently:
    a bad value is reported when the worker reads its settings)."""
    raw = os.environ.get("JAXPORT_WORKER_CONCURRENCY", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def cmd_worker(args: argparse.Namespace) -> int:
    # The pool processes read it (workers.app's Settings) to share the cores among their jobs.
    os.environ["JAXPORT_WORKER_CONCURRENCY"] = str(args.concurrency)
    from workers.app import QUEUE, celery_app

    celery_app.worker_main(["worker", f"--concurrency={args.concurrency}", f"--queues={QUEUE}",
                            f"--loglevel={args.loglevel}", f"--hostname=jaxport-{os.getpid()}@%h",
                            "--without-gossip", "--without-mingle"])
    return EXIT_OK


def _redact(url: str) -> str:
    parsed = urlparse(url)
    return url.replace(parsed.password, "***") if parsed.password else url


# --- up ------------------------------------------------------------------------------------------

def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _start_local_redis(url: str, data_dir: Path) -> subprocess.Popen:
    """Start `redis-server` for `url` (a local address) with AOF under `data_dir`."""
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise CommandError(f"no Redis answers at {_redact(url)}, and it is not a local address "
                           "that `jaxport up` could start one on")
    binary = shutil.which("redis-server")
    if binary is None:
        raise CommandError("no Redis answers and `redis-server` is not installed: install it "
                           "(`apt-get install redis-server`, `brew install redis`) or point "
                           "JAXPORT_REDIS_URL at a running Redis")
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = _spawn([binary, "--port", str(parsed.port or 6379), "--bind", parsed.hostname,
                   "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--save", ""],
                  stdout=subprocess.DEVNULL)
    for _ in range(50):
        if _redis_answers(url):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise CommandError(f"redis-server did not start on {_redact(url)} (port in use?)")


def cmd_up(args: argparse.Namespace) -> int:
    from jaxport.jobs import DEFAULT_REDIS_URL

    _setup_logging()
    for sig in (signal.SIGINT, signal.SIGTERM):  # both mean "stop everything cleanly"
        signal.signal(sig, _interrupt)
    url = os.environ.setdefault("JAXPORT_REDIS_URL", DEFAULT_REDIS_URL)
    children: list[subprocess.Popen] = []
    if not _redis_answers(url):
        log.info("no Redis at %s: starting redis-server (data in .jaxport/redis)", _redact(url))
        children.append(_start_local_redis(url, Path(".jaxport/redis")))
    try:
        return _run_children(args, children)
    finally:
        _stop(children)


def _run_children(args: argparse.Namespace, children: list[subprocess.Popen]) -> int:
    """Start the worker and the API (appended to `children`); return when one exits or on Ctrl-C."""
    me = [sys.executable, "-m", "service"]
    try:
        children.append(_spawn([*me, "worker", f"--concurrency={args.concurrency}"]))
        children.append(_spawn([*me, "serve", f"--host={args.host}", f"--port={args.port}"]))
        if _wait_for_api(f"http://{args.host}:{args.port}/healthz", children):
            print(f"jaxport is up: http://{args.host}:{args.port}  (API docs at /docs; the worker "
                  "takes jobs once TensorFlow is imported; Ctrl-C stops)", file=sys.stderr)
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        log.error("a child process exited; stopping the others")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _own_session_dying_with_parent() -> None:
    """preexec_fn: a new session (so Ctrl-C reaches only `up`, which stops the children in
    order) and SIGTERM when `up` itself dies."""
    import ctypes

    os.setsid()
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, preexec_fn=_own_session_dying_with_parent, **kwargs)


def _wait_for_api(url: str, children: list[subprocess.Popen], timeout: float = 180) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(c.poll() is None for c in children):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    return False


def _stop(children: list[subprocess.Popen]) -> None:
    """Stop in reverse start order — API, worker (a warm shutdown: the running job finishes or
    goes back to the queue), Redis last — each with SIGTERM, then SIGKILL after a grace time."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --- client commands ------------------------------------------------------------------------------

def _client(args: argparse.Namespace):
    from service.client import Client

    return Client(args.server, args.api_key)


def _exit_code(job: dict) -> int:
    return EXIT_FAILED if job["status"] in (FAILED, PARTIAL, CANCELED) else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise CommandError("--options must be a JSON object")
    if args.targets:
        options["targets"] = args.targets
    if not args.litertjs:
        options["litertjs"] = False
    if not args.archive.is_file():
        raise CommandError(f"{args.archive} is not a file")
    client = _client(args)
    job = client.submit(args.archive, options, args.idempotency_key)
    print(f"job {job['id']}: {job['status']}", file=sys.stderr)
    if args.wait or args.out:
        job = client.wait(job["id"], _progress_printer())
    if args.out and job["status"] in ("succeeded", "partial"):
        _download_bundle(client, job["id"], args.out)
        print(f"unpacked into {args.out}", file=sys.stderr)
    return _show_job(job, args)


def _show_job(job: dict, args: argparse.Namespace) -> int:
    """The job as JSON (--json), or its status line and, once it has results, the target table."""
    if args.json:
        print(json.dumps(job, indent=2))
        return _exit_code(job)
    from jaxport.console import summarize

    print(f"job {job['id']} {job['status']}: {job['stage']} ({job['progress']:.0%})"
          + (f" {job['message']}" if job["message"] else ""))
    if job.get("error"):
        print(f"error: [{job['error'].get('code')}] {job['error'].get('message')}")
        if job["error"].get("hint"):
            print(f"hint: {job['error']['hint']}")
    if job.get("targets"):
        summarize(job, f"{args.server.rstrip('/')}/v1/jobs/{job['id']}/artifacts/report.json")
    return _exit_code(job)


def cmd_jobs(args: argparse.Namespace) -> int:
    page = _client(args).jobs(args.limit, args.cursor)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    from jaxport.console import print_table

    print_table(["id", "status", "stage", "progress", "name", "file", "created"],
                [[j["id"], j["status"], j["stage"], f"{j['progress']:.0%}", j["name"],
                  j["upload"]["filename"], j["created_at"]] for j in page["jobs"]])
    if page["next_cursor"]:
        print(f"next: --cursor {page['next_cursor']}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.watch:
        if args.json:  # every event as it arrives, one JSON record per line
            job = client.job(args.job_id)
            for job in client.events(args.job_id):
                print(json.dumps(job), flush=True)
            return _exit_code(job)
        job = client.wait(args.job_id, _progress_printer())
    else:
        job = client.job(args.job_id)
    return _show_job(job, args)


def cmd_download(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.artifact:
        out = args.out or Path(args.artifact)
        client.download(args.job_id, args.artifact, out)
        print(f"wrote {out}", file=sys.stderr)
        return EXIT_OK
    out = args.out or Path(args.job_id)
    _download_bundle(client, args.job_id, out)
    print(f"unpacked into {out}", file=sys.stderr)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.job(args.job_id)
    if job["status"] in TERMINAL and not args.delete:
        raise CommandError(f"job {args.job_id} already ended ({job['status']})",
                           "pass --delete to delete it and its artifacts")
    job = client.delete(args.job_id)
    if job is None:
        print(f"job {args.job_id} deleted")
        return EXIT_OK
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(f"job {job['id']} {job['status']}")
    return EXIT_OK


def _progress_printer():
    from jaxport.console import Progress

    progress = Progress(sys.stderr)

    def show(job: dict) -> None:
        stage = "done" if job["status"] in TERMINAL else job["stage"]
        progress(stage, float(job["progress"]), job["message"] or job["stage"])

    return show


def _download_bundle(client, job_id: str, out: Path) -> None:
    """Download bundle.zip to a temp file and unpack it into `out` (paths checked)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jaxport-bundle-") as tmp:
        bundle = Path(tmp) / "bundle.zip"
        client.download(job_id, "bundle.zip", bundle)
        with zipfile.ZipFile(bundle) as zf:
            root = out.resolve()
            for name in zf.namelist():
                if not (root / name).resolve().is_relative_to(root):
                    raise CommandError(f"bundle member {name!r} escapes the output directory")
            zf.extractall(out)
