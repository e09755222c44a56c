"""The JS runtimes a long-lived process keeps for the conversions it forks (a worker's pool
process): the TF.js runner (Node) and the LiteRT.js runner (Node + headless Chromium).

Starting them costs each conversion ~1 s (Node) and ~1.5-5 s (Chromium); a kept runner serves
conversion after conversion, one session each (`jaxport.verify.node.NodeProcess.start_kept`),
and every session starts with nothing loaded. A conversion finds them through the runners'
`kept_env` variables, which `KeptRuntimes` sets in this process's environment (the forked
conversions inherit it), and starts runners of its own when a kept one does not answer.

Contract:
- `start()` (or `spawn()`, other work, then `wait()`) starts each runtime this machine has (LiteRT.js where Chromium is installed,
  whatever `JAXPORT_LITERTJS` says: a job may ask for the check); one that cannot start is
  left out, its variable unset, and returned with the reason. It leaves no thread running:
  the caller may fork after it.
- `start()` again before a conversion restarts any runner that died (the others are left
  running); `restart()` after a conversion that was killed (a runner may still be busy with
  its request); `close()` stops them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from jaxport.errors import TargetError
from jaxport.verify.node import KeptRunner, NodeProcess


KEPT_RUNTIMES = ("tfjs", "litertjs")


class KeptRuntimes:
    """The kept runners `names` (of `KEPT_RUNTIMES`) of this process, their sockets and logs
    under one private directory."""

    def __init__(self, directory: Path | None = None, names: tuple[str, ...] = KEPT_RUNTIMES) -> None:
        self.names = names
        self.directory = Path(directory or tempfile.mkdtemp(prefix=f"jaxport-kept-{os.getpid()}-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # the sockets take any model path: this user only
        self.runners: dict[str, KeptRunner] = {}

    def _wanted(self) -> dict[str, NodeProcess]:
        from jaxport.targets.tflite import LitertjsRunner
        from jaxport.verify.tfjs import TfjsRunner

        runners = {"tfjs": TfjsRunner, "litertjs": lambda: LitertjsRunner(self.directory / "litertjs")}
        return {name: runners[name]() for name in self.names}

    def spawn(self) -> dict[str, str]:
        """Start every wanted runtime that is not running, without waiting for it (`wait`);
        {name: why not} for those not installed."""
        failed = {}
        for name, runner in self._wanted().items():
            kept = self.runners.get(name)
            if kept is not None and kept.alive():
                continue
            os.environ.pop(runner.kept_env, None)
            try:
                self.runners[name] = runner.start_kept(self.directory / f"{name}.sock",
                                                       self.directory / f"{name}.log")
            except TargetError as exc:
                self.runners.pop(name, None)
                failed[name] = _why(exc)
        return failed

    def wait(self) -> dict[str, str]:
        """Wait until every spawned runtime answers and name its socket in its `kept_env`;
        {name: why not} for those that did not start (left out)."""
        failed = {}
        for name, kept in list(self.runners.items()):
            if kept.info:
                continue
            try:
                kept.ready()
            except TargetError as exc:
                del self.runners[name]
                failed[name] = _why(exc)
                continue
            os.environ[kept.runner.kept_env] = str(kept.socket_path)
        return failed

    def start(self) -> dict[str, str]:
        """`spawn()` then `wait()`: start what is not running; {name: why not} for the
        runtimes that could not start."""
        return {**self.spawn(), **self.wait()}

    def restart(self) -> dict[str, str]:
        """Stop every runner and start them again; as `start()`."""
        self.close()
        return self.start()

    def close(self) -> None:
        """Stop every runner and unset its variable."""
        for name, kept in list(self.runners.items()):
            os.environ.pop(kept.runner.kept_env, None)
            kept.close()
            del self.runners[name]


def _why(exc: TargetError) -> str:
    return f"{exc} ({exc.hint})" if exc.hint else str(exc)
