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
