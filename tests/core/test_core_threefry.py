"""scaleinv.threefry: the straight-line CPU lowering of threefry2x32 draws exactly the numbers of
JAX's default (rolled) lowering, and really replaces the rolled loop."""
import os
import subprocess
import sys

import jax

from scaleinv.threefry import unroll_on_cpu, unrolled

# bits, float32 and float64 normals (float64 draws 64-bit words), split and fold_in, vmapped keys
DRAW = """
import hashlib, jax, jax.numpy as jnp, numpy as np
def draw():
    k = jax.random.PRNGKey(20261201)
    a, b = jax.random.split(jax.random.fold_in(k, 7))
    parts = [jax.random.bits(a, (3, 5), jnp.uint32), jax.random.normal(b, (257,), jnp.float32),
             jax.random.normal(b, (129,), jnp.float64),
             jax.jit(jax.vmap(lambda kk: jax.random.uniform(kk, (33,), jnp.float64)))(jax.random.split(k, 4))]
    return hashlib.sha256(b"".join(np.asarray(p).tobytes() for p in parts)).hexdigest()
def has_while():
    return "while" in jax.jit(lambda kk: jax.random.bits(kk, (8,))).lower(jax.random.PRNGKey(0)).as_text()
"""


def test_unrolled_lowering_draws_the_default_lowerings_numbers():
    assert unroll_on_cpu() and unrolled()           # registered (conftest did it already: idempotent)
    ns = {}
    exec(DRAW, ns)
    assert not ns["has_while"]()                     # the rolled fori_loop is gone from the program
    env = {**os.environ, "SCALEINV_THREEFRY_UNROLL": "0", "JAX_PLATFORMS": "cpu"}
    code = DRAW + "jax.config.update('jax_enable_x64', True)\nprint(draw(), has_while())"
    out = subprocess.run([sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    digest, rolled_has_while = out.stdout.split()
    assert rolled_has_while == "True"                # the other process really used the rolled loop
    with jax.enable_x64(True):
        assert ns["draw"]() == digest                # ... and drew the same bits


def test_switched_off_by_environment(monkeypatch):
    import scaleinv.threefry as t

    monkeypatch.setattr(t, "_state", {"unrolled": False})
    monkeypatch.setenv("SCALEINV_THREEFRY_UNROLL", "off")
    assert t.unroll_on_cpu() is False and t.unrolled() is False
