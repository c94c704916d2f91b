"""JAX's persistent compilation cache for ``scaleinv`` commands and the tests.

XLA compilation is a large share of a short ``scaleinv verify`` / ``train`` / test run on CPU;
with the cache a second run loads the compiled executables from disk instead
(`JAX docs, persistent compilation cache
<https://docs.jax.dev/en/latest/persistent_compilation_cache.html>`_).

:func:`enable` points JAX at ``$XDG_CACHE_HOME/scaleinv/jax`` (default ``~/.cache/scaleinv/jax``)
through JAX's own environment variables, so it works whether or not JAX is imported yet, and
subprocesses (fake multi-device runs, CLI tests) inherit it:

* ``JAX_COMPILATION_CACHE_DIR`` -- the directory (a value already set by the user wins);
* ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` -- only programs that took at least this long to
  compile are stored (default here 0: every program; JAX's own default, 1 s, skips most of our CPU
  programs; measured on ``scaleinv verify --quick``, one process, single-threaded XLA: warm run
  42 CPU s with 0.2 s, 34 CPU s with 0; cold 95 CPU s either way; 323 entries, 4.2 MB);
* no size bound (entries are small: ~1.6k entries took 14 MB here): JAX's LRU eviction
  (``JAX_COMPILATION_CACHE_MAX_SIZE``) re-reads the access time of EVERY entry on every write,
  behind one file lock shared by all processes; a training test under load timed out inside that
  scan. Delete the directory to reclaim the space.

Off with ``SCALEINV_COMPILE_CACHE=0`` (also ``off``/``false``/``no``). The cache key covers the
program, the compile options, the XLA flags, the backend and the jax/jaxlib versions, so a
stale entry is never used for a different program; deleting the directory is always safe.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import MutableMapping, Optional

__all__ = ["ENV_SWITCH", "default_dir", "enabled", "enable"]

ENV_SWITCH = "SCALEINV_COMPILE_CACHE"
MIN_COMPILE_TIME_S = "0"


def default_dir(env: Optional[MutableMapping[str, str]] = None) -> Path:
    """``$XDG_CACHE_HOME/scaleinv/jax``, or ``~/.cache/scaleinv/jax``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scaleinv" / "jax"


def enabled(env: Optional[MutableMapping[str, str]] = None) -> bool:
    """False when ``SCALEINV_COMPILE_CACHE`` is 0 / off / false / no."""
    env = os.environ if env is None else env
    return env.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def enable(env: Optional[MutableMapping[str, str]] = None) -> Optional[str]:
    """Turn the persistent cache on (unless switched off); returns the directory or None.

    Sets JAX's environment variables (``setdefault``: the user's own values win) and, if JAX is
    already imported, the same options through ``jax.config``."""
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    d = env.setdefault("JAX_COMPILATION_CACHE_DIR", str(default_dir(env)))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", MIN_COMPILE_TIME_S)
    if env is os.environ and "jax" in sys.modules:
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", d)
            jax.config.update("jax_persistent_cache_min_compile_time_secs",
                              float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return d
