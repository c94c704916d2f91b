"""Shared tiny config for the sibert tests (hidden 32, 2 layers, seq 32, sample corpus)."""
from pathlib import Path

SAMPLE = str(Path(__file__).parent / "data" / "sample")


def tiny_overrides(cache_dir, **kw):
    base = dict(source=SAMPLE, vocab_size=300, hidden=32, layers=2, heads=2, ffn=64, max_positions=32,
                seq_len=32, batch_size=8, eval_every=10, eval_batches=2, ckpt_every=10,
                heldout_fraction=0.25, cache_dir=str(cache_dir), progress=False, steps=20)
    base.update(kw)
    return base


def set_args(overrides):
    out = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={v}"]
    return out


def fast_compile(env):
    """``env`` with XLA's LLVM backend at optimisation level 0 (``--xla_backend_optimization_level=0``).

    For trainer subprocesses whose test compares two runs made under the SAME flags (1 vs 8
    devices, one vs two processes, killed-and-resumed vs uninterrupted): compilation dominates
    those tiny-shape runs and level 0 roughly halves it (a tiny train step: ~10 s -> ~5 s of
    compilation). Both sides of each comparison run under the same flags. Level 0 changes float
    rounding (~1e-7 relative on a float32 angle), so it is never used where a test compares with
    a number computed under the default flags."""
    env = dict(env)
    flag = "--xla_backend_optimization_level"
    kept = [f for f in env.get("XLA_FLAGS", "").split() if f.split("=", 1)[0] != flag]
    env["XLA_FLAGS"] = " ".join(kept + [f"{flag}=0"])
    return env


def run_two_processes(cmd, port, timeout=1400):
    """Run ``cmd`` as processes 0 and 1 of a 2-process JAX job on 127.0.0.1:``port``, each with 2 fake CPU
    devices (the XLA flags of a 4-device one-process run); assert both exit 0; return the JSON summary
    each printed last. A process still running when this returns is killed."""
    import json
    import subprocess

    from sibert.devices import fake_cpu_devices_env

    procs = []
    for pid in range(2):
        env = fast_compile(fake_cpu_devices_env(2))
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = []
        for p in procs:
            o, e = p.communicate(timeout=timeout)
            assert p.returncode == 0, e[-3000:]
            outs.append(json.loads(o.strip().splitlines()[-1]))
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
