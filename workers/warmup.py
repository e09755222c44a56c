"""A pool process's warm-up, in two parts, so that a new worker takes its first job in seconds.

Importing everything every job needs takes ~12-16 s on 2 cores, and TensorFlow alone ~8 s of
it. The first stages of a conversion (extract, load, compose, the JAX reference) need only JAX
and Keras, so a pool process is warm in two steps:

1. `first()`, before it takes a job: JAX, Keras and the engine's JAX side (`FIRST_MODULES`,
   ~3.5 s).
2. `start_rest()`: a thread imports TensorFlow, keras_hub, orbax, LiteRT and the converters
   (`REST_MODULES`, then the tensorflowjs converters), after the first job has been forked or
   after `IDLE_S` without one.

Every fork of the pool process (`workers.isolation.run_isolated`) goes through `forking()`,
which keeps a fork and an import apart (a child forked while another thread imports inherits
the module locks it holds, and deadlocks on them):
- before the rest is imported, the fork goes first and the child is *cold* (`warm()` is False
  in it): it imports only what its own targets need, when they need it, and converts in one
  process (`jaxport.parallel`), so that the pool process's import has the other core and is
  done about when the cold job is;
- while the rest is importing, the fork waits until it is done (`importing()` says so first,
  for the job's message);
- after, every child starts warm, as it did when everything was imported up front.

Without a `Warmup` (tests, a library caller), `forking()` of the module is a no-op and `warm()`
is True.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("jaxport.worker")
_current: "Warmup | None" = None  # this process's, once it started the rest (`start_rest`)

FIRST_MODULES = ("jax", "keras", "jaxport.pipeline", "jaxport.compose", "jaxport.verify.runtimes",
                 "jaxport.verify.tfjs")
"""What the first stages of every job import (no TensorFlow: keras' JAX backend does not)."""

REST_MODULES = ("tensorflow", "keras_hub", "orbax.export", "ai_edge_litert.interpreter",
                "jaxport.lowering")
"""What the targets import (keras_hub registers its layers: ~2 s if left to each job; it
imports TensorFlow, so it is here), then `jaxport.tfjs_converter.converters()` (~1 s)."""

IDLE_S = 1.0
"""How long after `first()` the rest waits for a first job: a job queued before the worker
started is handed to the pool process within milliseconds of it being ready."""


def _import_rest() -> None:
    for module in REST_MODULES:
        importlib.import_module(module)
    from jaxport.tfjs_converter import converters

    converters()  # tensorflowjs and tf_keras: ~1 s per job otherwise


class Warmup:
    """The two-part warm-up of one pool process (see the module docstring)."""

    def __init__(self, rest: Callable[[], None] = _import_rest) -> None:
        self._import_rest = rest
        self._lock = threading.Lock()  # held across a fork; the thread takes it to begin importing
        self._forked = threading.Event()
        self._state = "first"  # first -> waiting -> importing -> warm
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def first(self) -> None:
        """Import `FIRST_MODULES` in this thread (before the pool process takes a job)."""
        for module in FIRST_MODULES:
            importlib.import_module(module)

    def start_rest(self, idle_s: float = IDLE_S) -> None:
        """Start the thread that imports the rest (after a first fork, or `idle_s`); from now
        on this is the process's warm-up, which its forks (`forking()`) go through, and the pool
        process takes jobs."""
        global _current
        _current = self
        log.info("pool process %d takes jobs after %.1f s (imported %s); importing %s and the "
                 "tensorflowjs converters next, beside the first job or after %g s without one",
                 os.getpid(), time.perf_counter() - self._t0, ", ".join(FIRST_MODULES),
                 ", ".join(REST_MODULES), idle_s)
        self._state = "waiting"
        self._thread = threading.Thread(target=self._rest, args=(idle_s,), name="jaxport-warmup",
                                        daemon=True)
        self._thread.start()

    def _rest(self, idle_s: float) -> None:
        cold_fork = self._forked.wait(idle_s)
        with self._lock:  # not while a fork is under way
            self._state = "importing"
        started = time.perf_counter()
        try:
            self._import_rest()
        except Exception:  # a broken install: each job then fails on it with its own error
            log.exception("pool process %d: the warm-up import failed; jobs import on their own",
                          os.getpid())
        finally:
            with self._lock:
                self._state = "warm"
        log.info("pool process %d warm in %.1f s (the rest took %.1f s%s)", os.getpid(),
                 time.perf_counter() - self._t0, time.perf_counter() - started,
                 ", beside a first job that imported it too" if cold_fork else "")

    def importing(self) -> bool:
        """True while the thread imports the rest (a fork now waits for it)."""
        return self._state == "importing"

    def warm(self) -> bool:
        """True once the rest is imported (a child forked now starts warm)."""
        return self._state == "warm"

    @contextmanager
    def forking(self) -> Iterator[None]:
        """Hold off the rest's import while the body forks; wait for it if it has begun."""
        while True:
            self._lock.acquire()
            if self._state != "importing":
                break  # with the lock held the thread cannot begin until the fork is done
            self._lock.release()
            self._thread.join()
        try:
            yield
        finally:
            self._lock.release()
            self._forked.set()


@contextmanager
def forking() -> Iterator[None]:
    """The process's `Warmup.forking()` where it warms up; a no-op elsewhere."""
    if _current is None:
        yield
    else:
        with _current.forking():
            yield


def warm() -> bool:
    """False in a pool process, or a child forked from it, that has not imported the rest."""
    return _current is None or _current.warm()


def importing() -> bool:
    """True while this process's warm-up imports the rest (a fork now waits for it)."""
    return _current is not None and _current.importing()
