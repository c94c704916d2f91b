"""Threefry on the CPU without its rolled loop: the same random bits, faster noisy sweeps.

JAX lowers the threefry2x32 hash behind ``jax.random`` (its default PRNG) on the CPU as a
``fori_loop`` over the hash's 5 groups of 4 rounds, to keep compile times down; on GPU and TPU it
emits the 20 rounds straight-line. Inside a ``lax.scan`` step that draws noise (every noisy toy
claim of ``scaleinv verify``) the rolled loop becomes an XLA while loop per draw, each iteration a
few tiny kernels plus copies of its carry. Profiled on the SGD family of rotational-equilibrium
claim R1 (6 configurations x 1024 float64 normals per step, 1,000 steps, XLA:CPU trace): the while
loop and the kernels inside it took over half of the executed time.

:func:`unroll_on_cpu` registers JAX's own straight-line lowering (the one it uses on GPU and
TPU) for the CPU as well. It is the same hash, so every random number is bit-identical (tested
against a fresh process with the default lowering). Measured on 2 idle cores (this session's
paired runs, the experiment processes paused): 1024 float64 normals x 30 configurations per
step, 12.6 -> 9.7 ns per normal; R1's simulation, 4,000 of its 24,000 steps, 4.3 / 5.1 ->
3.4 / 2.7 s; claim C5 (full mode) 19.8 / 18.3 -> 11.7 / 8.6 s.

``toyproblems`` calls it on import (the verify workers, the notebooks and the toy tests
inherit it); off with ``SCALEINV_THREEFRY_UNROLL=0`` (also ``off``/``false``/``no``). It uses
JAX internals (``jax._src``): where they have moved in another JAX version it changes nothing
and returns False. Lowerings are looked up when a function is first traced for a shape, so call
it before compiling anything that draws random numbers.
"""
from __future__ import annotations

import os

__all__ = ["unroll_on_cpu", "unrolled"]

_state = {"unrolled": False}


def unrolled() -> bool:
    """Whether :func:`unroll_on_cpu` has registered the straight-line lowering in this process."""
    return _state["unrolled"]


def unroll_on_cpu() -> bool:
    """Register JAX's straight-line threefry2x32 lowering for the CPU (idempotent).

    Returns True when the straight-line lowering is (now) registered, False when switched off by
    ``SCALEINV_THREEFRY_UNROLL=0`` or when this JAX version lacks the internals used.
    """
    if _state["unrolled"]:
        return True
    if os.environ.get("SCALEINV_THREEFRY_UNROLL", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu")
    except (ImportError, AttributeError):
        return False
    _state["unrolled"] = True
    return True
