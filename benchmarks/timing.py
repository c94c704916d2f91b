"""Side-by-side timing and machine information.

:func:`compare` times several contestants INTERLEAVED (round r runs every contestant once
before round r+1 starts), after excluding warm-up calls, so that slow drifts of a shared, noisy
machine hit every contestant alike; each contestant's figure is the median over rounds, and a
ratio is the median over rounds of the per-round ratio (:func:`paired_ratio`). Each
call's result is passed through ``jax.block_until_ready`` (a no-op on NumPy / torch values)
before the clock stops.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Dict

__all__ = ["compare", "paired_ratio", "block", "machine_info", "loadavg", "procs_running"]


def block(x: Any) -> Any:
    """Wait for every JAX array in ``x`` (other leaves pass through)."""
    import jax

    return jax.block_until_ready(x)


def compare(contestants: Dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
            inner: int = 1) -> Dict[str, Dict[str, Any]]:
    """Time each zero-argument callable; returns name -> {median_s, min_s, times_s, repeats}.

    ``inner`` calls are made per timed sample and the sample is divided by ``inner`` (for
    calls far shorter than the clock's useful resolution). ``repeats`` must be >= 5.
    """
    if repeats < 5:
        raise ValueError(f"repeats must be >= 5 (median of at least 5), got {repeats}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (compilation is excluded), got {warmup}")
    for fn in contestants.values():
        for _ in range(warmup):
            block(fn())
    times = {name: [] for name in contestants}
    for _ in range(repeats):
        for name, fn in contestants.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                out = fn()
            block(out)
            times[name].append((time.perf_counter() - t0) / inner)
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts,
                   "repeats": repeats, "inner": inner}
            for name, ts in times.items()}


def paired_ratio(res: Dict[str, Dict[str, Any]], num: str, den: str) -> float:
    """Median over rounds of times[num][r] / times[den][r]: the two were timed back to back in
    round r, so slow machine-wide drifts cancel in each round's ratio (the headline ratio of
    every row; the medians of the absolute times are reported beside it)."""
    a, b = res[num]["times_s"], res[den]["times_s"]
    return statistics.median(x / y for x, y in zip(a, b))


def loadavg():
    """(1, 5, 15)-minute load averages, or None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def procs_running():
    """'running/total' scheduling entities from /proc/loadavg (other jobs on the machine), or None."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[3]
    except (OSError, IndexError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    except OSError:
        pass
    return []


def _version(mod: str):
    from importlib import metadata

    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:  # pragma: no cover
        return None


def machine_info() -> Dict[str, Any]:
    """CPU / accelerator model, core count, memory, library versions, git commit."""
    import jax

    devices = jax.devices()
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    accel = [d.device_kind for d in devices if d.platform != "cpu"]
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in devices],
        "accelerator": accel[0] if accel else "none (no GPU/TPU lent to this run; CPU only)",
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("jax", "jaxlib", "optax", "flax", "numpy", "torch", "transformers")},
        "git_commit": _git_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
