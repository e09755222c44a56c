"""A pool process's two-part warm-up (workers.warmup) with the real fork of workers.isolation:
a fork never happens while the warm-up thread imports, a job forked before the import is cold
(and the import then runs beside it), and one forked while it runs waits for it.

Each case runs in a fresh interpreter (no JAX runtime, no other thread, no warm-up left from
another test); the "rest" is a module that takes 2 s to import and sets `DONE` last, so a
child forked mid-import would see it in `sys.modules` without `DONE`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import importlib, json, sys, time
from workers.isolation import Limits, run_isolated
from workers.warmup import Warmup, importing, warm

def child_sees(send):
    module = sys.modules.get("slow_rest")
    return {"present": module is not None, "done": getattr(module, "DONE", False), "warm": warm()}

def fork():
    t = time.monotonic()
    seen = run_isolated(child_sees, Limits(60, 4096), on_progress=lambda m: None,
                        keep_going=lambda: True)
    return {**seen, "seconds": time.monotonic() - t}

warmup = Warmup(rest=lambda: importlib.import_module("slow_rest"))
warmup.first()
if sys.argv[1] == "job-first":
    warmup.start_rest(idle_s=60)   # a job arrives at once: it goes first
    out = {"first": fork(), "second": fork()}
else:
    warmup.start_rest(idle_s=0.1)  # no job: the rest begins after 0.1 s
    time.sleep(0.6)
    out = {"importing": importing(), "first": fork()}
out["importing_after"] = importing()
print(json.dumps(out))
'''


def _run(tmp_path: Path, case: str) -> dict:
    (tmp_path / "slow_rest.py").write_text("import time\ntime.sleep(2.0)\nDONE = True\n")
    script = tmp_path / "case.py"
    script.write_text(SCRIPT)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_a_job_that_comes_first_is_forked_cold_and_the_next_waits_for_the_import(tmp_path: Path):
    out = _run(tmp_path, "job-first")
    # cold: it converts in one process (workers.execute), leaving a core to the import
    assert out["first"] == {**out["first"], "present": False, "done": False, "warm": False}
    # the import began after the first fork; the second fork waited for all of it
    assert out["second"]["present"] and out["second"]["done"] and out["second"]["warm"]
    assert out["second"]["seconds"] > 1.0
    assert out["importing_after"] is False


@pytest.mark.timeout(300)
def test_a_fork_while_the_warm_up_imports_waits_for_it(tmp_path: Path):
    out = _run(tmp_path, "idle")
    assert out["importing"] is True
    assert out["first"]["present"] and out["first"]["done"]  # never a half-imported module
    assert out["first"]["warm"]
    assert out["first"]["seconds"] > 0.8
    assert out["importing_after"] is False
