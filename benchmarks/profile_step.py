"""Where a training step's time goes: a per-category breakdown from ``jax.profiler`` (XLA CPU
thunks) and, for the peer, ``torch.profiler``. Used by ``scaleinv bench`` (full runs) to profile
the SIBERT step where the throughput target is missed.

Categories (XLA op names on CPU): ``matmul`` (dot / YNNPACK ``ynn_fusion``), ``exp/log``
(``wrapped_exponential``/``log``: the log-softmax over the vocabulary), ``copy/transpose``,
``gather/scatter`` (embedding lookup and its gradient), ``reduce``, ``other`` (remaining
elementwise fusions: norms, activations, optimizer, diagnostics). ``busy_ms`` is summed over
XLA's worker threads; ``wall_ms`` is the step's wall time; busy / (wall x threads) < 1 means the
threads waited (dependencies, or preemption by other processes on a shared machine).
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import tempfile
from typing import Any, Callable, Dict

__all__ = ["jax_breakdown", "torch_breakdown"]


def _category(name: str) -> str:
    n = name.lower()
    if n.startswith(("ynn_fusion", "dot", "convolution", "onednn")) or ".dot" in n or "matmul" in n:
        return "matmul"
    if "exponential" in n or n.startswith(("exp", "log")) or "_log" in n:
        return "exp/log"
    if "scatter" in n or "gather" in n or "dynamic-slice" in n or "dynamic_slice" in n:
        return "gather/scatter"
    if n.startswith(("copy", "transpose")):
        return "copy/transpose"
    if n.startswith("reduce") or "reduce" in n:
        return "reduce"
    return "other"


def jax_breakdown(fn: Callable[[], Any], iters: int = 3) -> Dict[str, Any]:
    """Profile ``iters`` calls of ``fn`` (already compiled and warm) -> ms per call by category."""
    import jax

    import time

    jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        t0 = time.perf_counter()
        for _ in range(iters):
            jax.block_until_ready(fn())
        wall = (time.perf_counter() - t0) * 1e6   # microseconds, like the trace
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
        if not files:
            return {"error": "no perfetto trace written"}
        with gzip.open(files[0]) as f:
            data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    cat, ops, workers = collections.Counter(), collections.Counter(), set()
    for e in events:
        if e.get("ph") != "X":
            continue
        t = threads.get((e["pid"], e["tid"]), "")
        name = e.get("name", "")
        if "XLAEigen" not in t or name.startswith("ThunkExecutor"):
            continue
        workers.add(t)
        cat[_category(name)] += e.get("dur", 0)
        ops[name] += e.get("dur", 0)
    busy = sum(cat.values())
    per = lambda us: round(us / iters / 1e3, 2)
    return {"wall_ms": per(wall), "busy_ms": per(busy), "worker_threads": len(workers),
            "busy_fraction": round(busy / max(wall * max(len(workers), 1), 1e-9), 3),
            "by_category_ms": {k: per(v) for k, v in cat.most_common()},
            "share": {k: round(v / max(busy, 1e-9), 3) for k, v in cat.most_common()},
            "top_ops_ms": {k: per(v) for k, v in ops.most_common(8)}}


def torch_breakdown(step: Callable[[], Any], iters: int = 3) -> Dict[str, Any]:
    """torch.profiler self-CPU time per op category for the HF peer's step (ms per call)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            step()
    cat, ops = collections.Counter(), collections.Counter()
    for a in prof.key_averages():
        name = a.key
        n = name.lower()
        if any(k in n for k in ("mm", "addmm", "bmm", "linear", "matmul", "scaled_dot_product", "_flash")):
            c = "matmul"
        elif any(k in n for k in ("exp", "log_softmax", "softmax", "_log")):
            c = "exp/log"
        elif any(k in n for k in ("embedding", "index", "gather", "scatter")):
            c = "gather/scatter"
        elif any(k in n for k in ("copy", "transpose", "contiguous", "clone", "permute")):
            c = "copy/transpose"
        elif any(k in n for k in ("adam", "_foreach", "lerp", "addcdiv", "addcmul")):
            c = "optimizer"
        else:
            c = "other"
        us = a.self_cpu_time_total
        cat[c] += us
        ops[name] += us
    per = lambda us: round(us / iters / 1e3, 2)
    total = sum(cat.values())
    return {"self_cpu_ms": per(total), "threads": torch.get_num_threads(),
            "by_category_ms": {k: per(v) for k, v in cat.most_common()},
            "share": {k: round(v / max(total, 1e-9), 3) for k, v in cat.most_common()},
            "top_ops_ms": {k: per(v) for k, v in ops.most_common(8)}}
