"""The persistent compile cache (`jaxport.compile_cache`) across real processes: what one
process compiles a later one loads, a forked conversion child's compiles survive it for the
next child, and the size cap evicts. Each check runs fresh Python processes, because JAX
opens its cache once per process at the first compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Compiles `n` distinct small functions; prints the cache events JAX recorded and where.
COMPILE = r"""
import json, sys
import jax, jax.numpy as jnp
from jaxport import compile_cache

events = []
jax.monitoring.register_event_listener(lambda name, **_: events.append(name))
mode, n = sys.argv[1], int(sys.argv[2])
start = int(sys.argv[5]) if len(sys.argv) > 5 else 0

def compile_some():
    for i in range(start, n):
        jax.jit(lambda x, i=i: jnp.sin(x) * i + i)(jnp.arange(3.0 + i)).block_until_ready()
    return {"hits": events.count("/jax/compilation_cache/cache_hits"),
            "misses": events.count("/jax/compilation_cache/cache_misses")}

if mode == "cap":  # dir, cap in bytes[, first function]
    from pathlib import Path
    compile_cache.enable(Path(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps(compile_some()))
elif mode == "fork":  # two conversion children of one parent that compiles nothing itself
    from workers.isolation import Limits, run_isolated
    compile_cache.enable_from_env()
    runs = [run_isolated(lambda send: compile_some(), Limits(120, 4096),
                         on_progress=lambda m: None, keep_going=lambda: True) for _ in range(2)]
    print(json.dumps(runs))
else:
    print(json.dumps({"dir": str(compile_cache.enable_from_env()), **compile_some()}))
"""


def _run(*args: str, **env: str):
    full = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", **env}
    proc = subprocess.run([sys.executable, "-c", COMPILE, *args], env=full, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _entries(directory: Path) -> list[Path]:
    """JAX's entries under a cache directory."""
    return sorted((directory / "jax").glob("*-cache"))


def test_a_second_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    cache = tmp_path / "xla"
    first = _run("plain", "4", JAXPORT_COMPILE_CACHE_DIR=str(cache))
    assert first["dir"] == str(cache) and first["hits"] == 0 and first["misses"] >= 4
    assert len(_entries(cache)) >= 4  # kept although each compile takes milliseconds
    second = _run("plain", "4", JAXPORT_COMPILE_CACHE_DIR=str(cache))
    assert second["misses"] == 0 and second["hits"] == first["misses"]


def test_off_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = _run("plain", "2", JAXPORT_COMPILE_CACHE_DIR="off", XDG_CACHE_HOME=str(home))
    assert run == {"dir": "None", "hits": 0, "misses": 0}
    assert not home.exists()


def test_default_is_the_user_cache_dir(tmp_path: Path) -> None:
    run = _run("plain", "1", XDG_CACHE_HOME=str(tmp_path), JAXPORT_COMPILE_CACHE_DIR="")
    assert run["dir"] == str(tmp_path / "jaxport" / "compile")
    assert _entries(tmp_path / "jaxport" / "compile")


def test_a_conversion_child_finds_what_the_previous_child_compiled(tmp_path: Path) -> None:
    """The worker's case: children forked from one parent; the first child's compiles would
    die with it without the cache."""
    cache = tmp_path / "xla"
    first, second = _run("fork", "3", JAXPORT_COMPILE_CACHE_DIR=str(cache))
    assert first["hits"] == 0 and first["misses"] >= 3
    assert second == {"hits": first["misses"], "misses": 0}


def test_the_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    _run("cap", "1", str(probe), str(2**30))
    entry = max(p.stat().st_size for p in _entries(probe))
    cache, cap = tmp_path / "xla", 6 * entry  # JAX's half of the cap: 3 entries
    _run("cap", "12", str(cache), str(cap))
    kept = _entries(cache)
    assert 1 <= len(kept) < 12 and sum(p.stat().st_size for p in kept) <= cap // 2
    # the newest entries are the ones kept, the oldest went
    last = _run("cap", "12", str(cache), str(cap), "11")
    assert last["misses"] == 0 and last["hits"] >= 1
    assert _run("cap", "1", str(cache), str(cap), "0")["hits"] == 0


@pytest.mark.parametrize("value", ["x", "0"])
def test_a_bad_cap_is_a_named_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxport.compile_cache import MAX_MB_ENV, CacheConfigError, configured

    monkeypatch.setenv(MAX_MB_ENV, value)
    with pytest.raises(CacheConfigError, match=MAX_MB_ENV) as info:
        configured()
    assert info.value.hint


def test_tensorflow_gets_its_cache_dir_and_is_trimmed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """TF's part: its flag joins the user's TF_XLA_FLAGS; past half the cap, oldest go first."""
    from jaxport.compile_cache import enable_tensorflow

    tf_dir = tmp_path / "tf"
    tf_dir.mkdir()
    for i in range(4):
        (tf_dir / f"entry{i}.pb").write_bytes(b"x" * 1000)
        os.utime(tf_dir / f"entry{i}.pb", (1000 + i, 1000 + i))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory=/old")
    enable_tensorflow(tf_dir, 2500)
    assert os.environ["TF_XLA_FLAGS"] == (f"--tf_xla_auto_jit=0 "
                                          f"--tf_xla_persistent_cache_directory={tf_dir}")
    assert sorted(p.name for p in tf_dir.iterdir()) == ["entry2.pb", "entry3.pb"]
