"""Item 4: optimizer memory, SGD+WD+RGC vs AdamW, on SIBERT base-size parameters.

Bytes are counted from the pytrees' shapes and dtypes with ``jax.eval_shape`` (nothing is
allocated): P = bytes of the parameters, S(opt) = bytes of ``opt.init(params)``. The paper's
claim ("Adam needs 3x the memory of SGD for parameters + optimizer state"): SGD(+WD, no momentum)
keeps no per-parameter state, AdamW keeps two moments, so

    (P + S(AdamW)) / (P + S(SGD+WD+RGC)) = (P + 2P) / (P + O(1)) -> 3.

Three comparisons: (a) the same optimizer on every parameter (the claim as stated); (b) the two
training recipes of :func:`sibert.train.make_optimizer`: SIBERT (encoder SGD+WD+RGC, head LAMB)
vs BERT (AdamW everywhere) on the SIBERT base parameters; (c) measured: a subprocess per
optimizer materialises the parameters and ``opt.init`` and reports the resident-set growth
(VmRSS from /proc, what the platform reports on CPU; device ``memory_stats()`` is None here). A training step also holds the gradients (another P) and activations; those are not
optimizer memory and are left out of the ratio (with gradients: (1+1+2)/(1+1) = 2x).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List

import numpy as np

from benchmarks.rows import BenchRow

__all__ = ["tree_bytes", "bench"]


def tree_bytes(tree) -> int:
    import jax

    return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _abstract_params(preset: str):
    import jax

    from benchmarks.sibert_step import tiny_config
    from sibert.model import ModelConfig, init_params

    cfg = tiny_config(preset)
    mcfg = ModelConfig.from_train(cfg)
    return cfg, jax.eval_shape(lambda k: init_params(mcfg, k, cfg.seq_len), jax.random.PRNGKey(0))


def _optimizers(cfg) -> Dict:
    import dataclasses

    import optax

    from scaleinv.optim import sgd_wd_rgc
    from sibert.train import make_optimizer

    return {
        "sgd-wd-rgc (all params)": sgd_wd_rgc(cfg.lr, cfg.weight_decay, C=cfg.clip_C),
        "adamw (all params)": optax.adamw(1e-3, weight_decay=1e-2),
        "SIBERT recipe (enc SGD+WD+RGC, head LAMB)": make_optimizer(cfg)[0],
        "BERT recipe (AdamW enc + head)": make_optimizer(dataclasses.replace(cfg, optimizer="adamw",
                                                                             head_optimizer="adamw"))[0],
    }


def counted(preset: str) -> Dict[str, int]:
    import jax

    cfg, params = _abstract_params(preset)
    out = {"params": tree_bytes(params), "n_params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))}
    for name, tx in _optimizers(cfg).items():
        out[name] = tree_bytes(jax.eval_shape(tx.init, params))
    return out


def _worker(preset: str, which: str) -> Dict[str, float]:
    """Subprocess body: materialise params (zeros) then opt.init; report maxrss growth (bytes)."""
    import resource

    import jax
    import jax.numpy as jnp

    def rss():
        """Current resident set (VmRSS, bytes); peak ru_maxrss where /proc is missing."""
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    cfg, abstract = _abstract_params(preset)
    tx = _optimizers(cfg)[which]
    init = jax.jit(tx.init)
    init.lower(abstract).compile()                      # compile before measuring
    zeros = jax.jit(lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract))
    zeros.lower().compile()
    r0 = rss()
    params = jax.block_until_ready(zeros())
    r1 = rss()
    state = jax.block_until_ready(init(params))
    r2 = rss()
    return {"rss_params": r1 - r0, "rss_state": r2 - r1, "rss_total": r2 - r0,
            "counted_state": tree_bytes(state), "counted_params": tree_bytes(params)}


def measured(preset: str, which: str) -> Dict[str, float]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    code = ("import json, sys; from benchmarks.memory import _worker; "
            f"print('RESULT ' + json.dumps(_worker({preset!r}, {which!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"memory worker failed ({which}): {out.stderr[-2000:]}")


def bench(quick: bool) -> List[BenchRow]:
    c = counted("base")
    P = c["params"]
    sgd, adam = c["sgd-wd-rgc (all params)"], c["adamw (all params)"]
    si, bert = c["SIBERT recipe (enc SGD+WD+RGC, head LAMB)"], c["BERT recipe (AdamW enc + head)"]
    mib = 2.0**20
    rows = [
        BenchRow("B4.same_params", f"params + optimizer state, SIBERT base ({c['n_params'] / 1e6:.1f} M params, f32), "
                 "eval_shape (nothing allocated)", "SGD+WD+RGC on all params", "AdamW on all params",
                 (P + sgd) / mib, (P + adam) / mib, "MiB", (P + adam) / (P + sgd), "peer bytes / our bytes",
                 "", "report", note=f"paper/talk claim: 3x; optimizer state alone {sgd} B vs {adam / mib:.1f} MiB",
                 extra=c),
        BenchRow("B4.recipes", "params + optimizer state, SIBERT base, the two training recipes",
                 "SIBERT recipe: encoder SGD+WD+RGC, head LAMB", "BERT recipe: AdamW (encoder + head)",
                 (P + si) / mib, (P + bert) / mib, "MiB", (P + bert) / (P + si), "peer bytes / our bytes", "",
                 "report", note="LAMB keeps 2 moments of the (small) head", extra=c),
    ]
    mpreset = "small" if quick else "base"
    try:
        ms = measured(mpreset, "sgd-wd-rgc (all params)")
        ma = measured(mpreset, "adamw (all params)")
        r = ma["rss_total"] / max(ms["rss_total"], 1)
        rows.append(BenchRow("B4.measured_rss", f"resident-memory growth: materialise params + opt.init ({mpreset} preset, "
                             "one subprocess each)", "SGD+WD+RGC on all params", "AdamW on all params",
                             ms["rss_total"] / mib, ma["rss_total"] / mib, "MiB", r, "peer bytes / our bytes", "",
                             "report", note="VmRSS growth after params and after opt.init; allocator granularity makes it approximate",
                             extra={"sgd": ms, "adamw": ma}))
    except Exception as e:  # measured peak is best effort: the counted rows above are the figure
        rows.append(BenchRow("B4.measured_rss", f"resident-memory growth ({mpreset})", "SGD+WD+RGC", "AdamW",
                             None, None, "MiB", None, "peer bytes / our bytes", "", "report",
                             note=f"measurement failed: {type(e).__name__}: {str(e)[:200]}"))
    return rows
