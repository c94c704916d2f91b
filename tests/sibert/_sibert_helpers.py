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
