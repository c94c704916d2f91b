"""Checks that run before a training run writes anything: output path and memory.

* :func:`check_run_dir` -- ``--out`` is a directory (or can be created: the nearest existing
  ancestor is a writable directory); a regular file, an unwritable parent or a path under a
  file is a :class:`~sibert.config.ConfigError` naming ``--out``.
* :func:`estimate_memory` -- a dry evaluation of shapes with ``jax.eval_shape`` (nothing is
  allocated): the train state {params, optimizer state} exactly, and the activations of one
  forward pass from the shapes of every module output (flax ``capture_intermediates``) at the
  per-device batch. Per device, with ``S`` the state bytes (divided by the device count under
  FSDP for the sharded part, here approximated as all of it), ``A`` the activation bytes and
  ``B`` the batch bytes::

      M ~= S + 2 P + 2 A + B            (P = parameter bytes: gradients and updates)

  The factor 2 on ``A`` stands for the backward pass's cotangents of the kept activations. It
  is an estimate to catch absurd configurations early (``batch_size=10**9``), checked against
  XLA's own ``memory_analysis()`` of the compiled step in the tests; it is not a promise.
* :func:`check_memory` -- refuses (``batch_size: ...``) when the estimate exceeds the memory
  available to the devices of this process (accelerator ``bytes_limit``, or ``MemAvailable`` of
  the host for CPU devices, shared by all fake CPU devices).
"""
from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from sibert.config import ConfigError, TrainConfig

__all__ = ["check_run_dir", "check_cache_dir", "check_config_file", "check_distributed_env", "estimate_memory", "available_memory", "check_memory", "GiB"]

GiB = float(1 << 30)


def check_run_dir(run_dir, flag: str = "--out") -> Path:
    """Absolute ``run_dir`` if it is (or can be made) a writable directory; ConfigError else."""
    p = Path(run_dir).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag}: {str(p)!r} exists and is not a directory (give a directory path)")
    a = p
    while not a.exists():
        a = a.parent
    if not a.is_dir():
        raise ConfigError(f"{flag}: cannot create {str(p)!r}: {str(a)!r} is not a directory")
    if not os.access(a, os.W_OK | os.X_OK):
        what = "write to" if a == p else "create"
        raise ConfigError(f"{flag}: cannot {what} {str(p)!r}: no write permission in {str(a)!r}")
    from scaleinv.usage import UsageError, probe_creatable
    try:   # the real path (as root os.access passes where mkdir fails, e.g. under /proc)
        probe_creatable(p, flag, p)
    except UsageError as e:
        raise ConfigError(str(e)) from None
    return p


def check_cache_dir(cache_dir: str) -> None:
    """``cache_dir`` ("" = ~/.cache/scaleinv) is a directory or can be created: ConfigError
    naming ``cache_dir`` when it, or its nearest existing ancestor, is not a directory."""
    if not cache_dir:
        return
    p = Path(cache_dir).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"cache_dir: {str(p)!r} exists and is not a directory; allowed: a directory "
                          f"(created if missing), or '' for ~/.cache/scaleinv")
    a = p
    while not a.exists():
        a = a.parent
    if not a.is_dir():
        raise ConfigError(f"cache_dir: cannot create {str(p)!r}: {str(a)!r} is not a directory; allowed: a "
                          f"directory (created if missing), or '' for ~/.cache/scaleinv")


def check_config_file(path) -> None:
    """``--config`` names a readable file (a directory or a special file is refused)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"--config: {str(path)!r} is a directory; allowed: a TOML file")
    if p.exists() and not p.is_file():
        raise ConfigError(f"--config: {str(path)!r} is not a regular file; allowed: a TOML file")


def check_distributed_env(env=None) -> None:
    """The multi-host variables (read by :func:`sibert.train.maybe_initialize_distributed`)
    are well-formed before anything starts: ``JAX_COORDINATOR_ADDRESS`` is ``host:port``,
    ``JAX_NUM_PROCESSES`` an integer >= 1, ``JAX_PROCESS_ID`` an integer in 0..N-1, and the
    coordinator's host resolves (``socket.getaddrinfo``)."""
    env = os.environ if env is None else env
    addr = env.get("JAX_COORDINATOR_ADDRESS", "").strip()
    n_raw, pid_raw = env.get("JAX_NUM_PROCESSES", "").strip(), env.get("JAX_PROCESS_ID", "").strip()
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"JAX_COORDINATOR_ADDRESS: {addr!r} is not host:port; allowed: e.g. 10.0.0.1:12345 "
                          f"(port 1..65535)")
    try:   # an unresolvable host would make every process wait silently until JAX's timeout
        socket.getaddrinfo(host.strip("[]"), int(port))
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"JAX_COORDINATOR_ADDRESS: host {host!r} does not resolve ({e}); allowed: a host name "
                          f"or IP address of process 0, e.g. 10.0.0.1:12345") from None
    n = None
    if n_raw:
        if not n_raw.isdigit() or int(n_raw) < 1:
            raise ConfigError(f"JAX_NUM_PROCESSES: {n_raw!r} is not a number of processes; allowed: an integer >= 1")
        n = int(n_raw)
    if pid_raw:
        if not pid_raw.isdigit():
            raise ConfigError(f"JAX_PROCESS_ID: {pid_raw!r} is not a process index; allowed: an integer >= 0")
        if n is not None and int(pid_raw) >= n:
            raise ConfigError(f"JAX_PROCESS_ID: {pid_raw} is out of range for JAX_NUM_PROCESSES={n}; allowed: "
                              f"0..{n - 1}")


def _nbytes(tree) -> int:
    import jax
    return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def estimate_memory(cfg: TrainConfig, num_devices: int = 1) -> Dict[str, float]:
    """Bytes per device (see the module docstring), from ``jax.eval_shape`` only."""
    import jax
    import jax.numpy as jnp

    from sibert.model import MLMModel, ModelConfig, init_params
    from sibert.train import make_optimizer

    mcfg = ModelConfig.from_train(cfg)
    model = MLMModel(mcfg)
    tx, _, _ = make_optimizer(cfg)

    def state(key):
        params = init_params(mcfg, key, cfg.seq_len, 1.0)
        return params, tx.init(params)

    params, opt = jax.eval_shape(state, jax.ShapeDtypeStruct((2,), jnp.uint32))
    per_dev = max(1, -(-cfg.batch_size // num_devices))
    M = max(1, int(round(cfg.mask_prob * cfg.seq_len)))
    tokens = jax.ShapeDtypeStruct((per_dev, cfg.seq_len), jnp.int32)
    pos = jax.ShapeDtypeStruct((per_dev, M), jnp.int32)

    def fwd(p, t, q):
        return model.apply({"params": p}, t, q, capture_intermediates=True, mutable=["intermediates"])

    logits, inter = jax.eval_shape(fwd, params, tokens, pos)
    p_bytes, o_bytes = _nbytes(params), _nbytes(opt)
    a_bytes = _nbytes(inter) + 2 * _nbytes(logits)   # + softmax / log-probs of the head
    b_bytes = per_dev * (cfg.seq_len + 3 * M) * 4
    shard = num_devices if cfg.fsdp else 1
    total = (p_bytes + o_bytes) / shard + 2 * p_bytes / shard + 2 * a_bytes + b_bytes
    return {"params": p_bytes, "opt_state": o_bytes, "activations": a_bytes, "batch": b_bytes,
            "per_device": total, "per_device_batch": per_dev}


def available_memory(devices=None) -> Optional[float]:
    """Bytes available to ``devices`` (default: this process's local devices), or None."""
    import jax
    devices = jax.local_devices() if devices is None else devices
    limits = []
    for d in devices:
        try:
            stats = d.memory_stats() or {}
        except Exception:  # not implemented on some backends
            stats = {}
        if "bytes_limit" in stats:
            limits.append(float(stats["bytes_limit"]) - float(stats.get("bytes_in_use", 0)))
    if limits and len(limits) == len(devices):
        return min(limits) * len(devices)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: TrainConfig, num_devices: int, local_devices: int = 1,
                 available: Optional[float] = None) -> Dict[str, float]:
    """The estimate; ConfigError naming ``batch_size`` when it exceeds the available memory."""
    est = estimate_memory(cfg, num_devices)
    avail = available_memory() if available is None else available
    need = est["per_device"] * local_devices
    if avail is not None and need > avail:
        act_share = 2 * est["activations"] / est["per_device"]
        raise ConfigError(
            f"batch_size: {cfg.batch_size} needs an estimated {need / GiB:.2f} GiB on this host "
            f"({local_devices} device(s) x {est['per_device'] / GiB:.2f} GiB: state "
            f"{(est['params'] + est['opt_state']) / GiB:.3f} GiB, activations of "
            f"{est['per_device_batch']} sequences {2 * est['activations'] / GiB:.2f} GiB) but "
            f"{avail / GiB:.2f} GiB are available; "
            + ("lower batch_size" if act_share > 0.5 else "use a smaller model (hidden/layers/vocab_size) or fsdp=true"))
    return est
