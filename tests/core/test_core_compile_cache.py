"""scaleinv.compile_cache: where the persistent JAX cache goes, that the user's settings win,
that SCALEINV_COMPILE_CACHE=0 turns it off, and that a CLI subprocess really writes entries."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaleinv.compile_cache import default_dir, enable, enabled


def test_default_dir_follows_xdg(tmp_path):
    assert default_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "scaleinv" / "jax"
    assert default_dir({"HOME": "/nonexistent"}).parts[-2:] == ("scaleinv", "jax")


def test_enable_sets_jax_env_and_keeps_user_values(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert enable(env) == str(tmp_path / "scaleinv" / "jax")
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "scaleinv" / "jax")
    assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0.0   # every program is cached
    user = {"JAX_COMPILATION_CACHE_DIR": "/my/cache", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "3"}
    assert enable(user) == "/my/cache"
    assert user["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "3"


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_switch_off(value):
    env = {"SCALEINV_COMPILE_CACHE": value}
    assert not enabled(env)
    assert enable(env) is None
    assert "JAX_COMPILATION_CACHE_DIR" not in env


def test_cli_subprocess_writes_cache_entries(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "JAX_PERSISTENT"))}
    env.update(XDG_CACHE_HOME=str(tmp_path), SCALEINV_COMPILE_CACHE="1",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    code = ("from scaleinv.compile_cache import enable; enable(); import jax, jax.numpy as jnp; "
            "print(float(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).sum()))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    entries = list((Path(tmp_path) / "scaleinv" / "jax").glob("*"))
    assert entries, "no cache entry written"
    off = dict(env, SCALEINV_COMPILE_CACHE="0", XDG_CACHE_HOME=str(tmp_path / "off"))
    r = subprocess.run([sys.executable, "-c", code], env=off, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (tmp_path / "off").exists()
