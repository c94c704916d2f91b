"""Fake CPU devices for multi-device runs on one host (tests, benchmarks, laptops).

``XLA_FLAGS=--xla_force_host_platform_device_count=N`` splits the host CPU into N XLA devices.
It only acts before JAX initialises, so it is set in the environment of a *new* process:
:func:`fake_cpu_devices_env` returns that environment.

XLA:CPU runs the devices' collectives (all-reduce, all-gather) as an in-process rendezvous of
N threads and aborts the process when a thread has not arrived after a timeout (40 s by
default: "Expected 8 threads to join the rendezvous, but only 6 of them arrived on time").
With more fake devices than cores on a loaded machine a thread can legitimately wait longer
than that, so the environment also raises XLA's CPU collective timeouts
(``--xla_cpu_collective_timeout_seconds``, ``--xla_cpu_collective_call_terminate_timeout_seconds``;
``--xla_cpu_collective_call_warn_stuck_timeout_seconds`` only delays a warning).

A longer timeout does not cure a real deadlock. XLA:CPU runs each device's part of a program
on a client pool with one thread per device; when several *independent* programs with
collectives are in flight at once (e.g. an eager per-leaf norm of FSDP-sharded parameters),
the threads of some devices can wait in one program's all-reduce for devices whose threads wait
in another's, and nothing moves. Code that reduces sharded arrays outside the train step does
it in ONE jitted program (``sibert.train._jit_tree_norm``).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

__all__ = ["COLLECTIVE_TIMEOUT_S", "fake_cpu_devices_flags", "fake_cpu_devices_env"]

COLLECTIVE_TIMEOUT_S = 1800  # 30 min: far beyond any step of the presets on a loaded 2-core host


def fake_cpu_devices_flags(n: int, existing: str = "", timeout_s: int = COLLECTIVE_TIMEOUT_S) -> str:
    """``existing`` XLA_FLAGS with the device count set to ``n`` and the collective timeouts raised."""
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    ours = {
        "--xla_force_host_platform_device_count": str(n),
        "--xla_cpu_collective_timeout_seconds": str(timeout_s),
        "--xla_cpu_collective_call_terminate_timeout_seconds": str(timeout_s),
        "--xla_cpu_collective_call_warn_stuck_timeout_seconds": str(timeout_s),
    }
    kept = [f for f in existing.split() if f.split("=", 1)[0] not in ours]
    return " ".join(kept + [f"{k}={v}" for k, v in ours.items()])


def fake_cpu_devices_env(n: int, base: Optional[Mapping[str, str]] = None,
                         timeout_s: int = COLLECTIVE_TIMEOUT_S) -> Dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) for a subprocess that sees ``n`` CPU devices."""
    env = dict(os.environ if base is None else base)
    env["XLA_FLAGS"] = fake_cpu_devices_flags(n, env.get("XLA_FLAGS", ""), timeout_s)
    env["JAX_PLATFORMS"] = "cpu"
    return env
