"""In-process A/B of attention layouts (issue 16, target 1: copies/transposes in the step).

Each variant is a drop-in ``SelfAttention`` with the SAME parameter tree and init as
``sibert.model.SelfAttention`` (``query``/``key``/``value`` kernels (D, H, dh) + bias (H, dh),
``out`` kernel (H, dh, D) [+ bias (D,) for BERT]); only the layout of the intermediate tensors
and the einsums differ:

* ``legacy``: the layout before this lever: ``nn.DenseGeneral((H, dh))`` -> q, k, v (B, L, H, dh);
  scores ``bqhd,bkhd->bhqk``; context ``bhqk,bkhd->bqhd``; ``DenseGeneral(D, axis=(-2, -1))``.
* ``current``: whatever ``sibert.model.SelfAttention`` is now (after the lever, if it landed).
* ``bhld``: q, k, v projected straight to (B, H, L, dh) (``bld,dhk->bhlk``), heads a leading
  batch dimension in both attention einsums (``bhqd,bhkd->bhqk``, ``bhqk,bhkd->bhqd``), output
  projection ``bhqd,hdo->bqo``.
* ``bhld_ctx_bqhd``: as ``bhld`` but the context is written (B, L, H, dh) (``bhqk,bhkd->bqhd``) so the
  output projection is a plain (B L, H dh) x (H dh, D) matmul.
* ``kT``: as ``bhld`` but k projected to (B, H, dh, L) (``bld,dhk->bhkl``) so the scores are a
  plain batched matmul (``bhqd,bhdk->bhqk``).
* ``hb``: heads the LEADING batch dimension: x broadcast to (H, B, L, D), q, k, v (H, B, L, dh)
  from matmuls batched over h, attention batched over (h, b), output ``hbqd,hdo->bqo``.
* ``hb_sum``: as ``hb`` but the output projection batched over h (``hbqd,hdo->hbqo``), then summed.
* ``loop_cat``: one head at a time (a Python loop; H is small): q_h = x W_q[:, h] + b_q[h] a plain
  (B L, D) x (D, dh) matmul, attention batched over b only, the heads' contexts concatenated
  along the last axis and projected by one matmul.
* ``loop_sum``: as ``loop_cat`` but the output is sum_h ctx_h W_o[h].

Timing: one process builds the trainer's jitted training step (``benchmarks.sibert_step.
make_step``: forward + backward + update + diagnostics, state donated) once per variant; the
variant is selected by patching ``sibert.model.SelfAttention`` while the step is initialised and
traced. After two warm calls each (compilation excluded), every round times, for each variant v,
``legacy`` and v back to back (the pair's order and the variants' order alternate by round), so
each ratio compares two ADJACENT calls. Two ratios per pair: wall time, and process CPU time (all
threads; it does not count the time other processes held the cores, so it is far less noisy on
a shared machine: an A/A pair ``current`` vs ``legacy`` of identical code gives 0.99-1.00). The
figures are medians over rounds of the per-round ratio (< 1 = v faster), with the quartiles.
Numerics: loss and gradients of ``mlm_loss`` of each variant vs ``legacy`` on the same
parameters and batch (max and median over leaves of ||g_v - g_legacy|| / ||g_legacy||; a leaf
whose exact gradient is 0, BERT's key bias under the shift-invariant softmax, holds rounding
noise only and is compared to the whole gradient's norm), and the initialised parameter trees
are checked bit for bit.

``--hlo-copies`` instead counts the activation-sized copy / transpose instructions of each
variant's compiled step (what the profile's "copy/transpose" category runs).

Run (single-threaded XLA kernels, set before JAX starts; results as JSON)::

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
      python -m benchmarks.ab_attention --preset tiny --model sibert --rounds 15 \
      --variants legacy,current,bhld,bhld_ctx_bqhd,kT,hb,hb_sum,loop_cat,loop_sum --json ab.json
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import time
from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import sibert.model as sm
from sibert.model import ModelConfig, attention_probs

__all__ = ["VARIANTS", "LayoutAttention", "run"]


def _key_mask(attention_mask):
    """(B, L) token mask -> (B, 1, 1, L) key mask (as sibert.model)."""
    return None if attention_mask is None else attention_mask[:, None, None, :]


def _flat_init(init, n_in: int):
    """nn.DenseGeneral's kernel init: draw the (prod(in dims), prod(out dims)) matrix, reshape."""
    def f(rng, shape, dtype=jnp.float32):
        flat = (int(np.prod(shape[:n_in])), int(np.prod(shape[n_in:])))
        return jnp.reshape(init(rng, flat, dtype), shape)
    return f


class _Proj(nn.Module):
    """x (B, L, D) -> einsum(spec, x, W) + b with DenseGeneral((H, dh))'s parameters."""
    heads: int
    head_dim: int
    spec: str            # e.g. "bld,dhk->bhlk"
    bias_index: str      # how the (H, dh) bias broadcasts onto the output, e.g. "h1k"
    kernel_init: object

    @nn.compact
    def __call__(self, x):
        k = self.param("kernel", _flat_init(self.kernel_init, 1), (x.shape[-1], self.heads, self.head_dim))
        b = self.param("bias", nn.initializers.zeros_init(), (self.heads, self.head_dim))
        b = {"h1k": b[:, None, :], "hk1": b[:, :, None], "hk": b, "h11k": b[:, None, None, :]}[self.bias_index]
        return jnp.einsum(self.spec, x, k) + b


class _Out(nn.Module):
    """ctx -> einsum(spec, ctx, W_o) [+ b] with DenseGeneral(D, axis=(-2, -1))'s parameters."""
    features: int
    spec: str            # e.g. "bhqd,hdo->bqo"
    use_bias: bool
    kernel_init: object

    @nn.compact
    def __call__(self, ctx, heads: int, head_dim: int):
        w = self.param("kernel", _flat_init(self.kernel_init, 2), (heads, head_dim, self.features))
        y = jnp.einsum(self.spec, ctx, w)
        if self.spec.endswith("->hbqo"):      # per-head projections, summed over heads
            y = jnp.sum(y, axis=0)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y


class _QKVParams(nn.Module):
    """Just nn.DenseGeneral((H, dh))'s parameters: (kernel (D, H, dh), bias (H, dh))."""
    heads: int
    head_dim: int
    kernel_init: object

    @nn.compact
    def __call__(self, d: int):
        k = self.param("kernel", _flat_init(self.kernel_init, 1), (d, self.heads, self.head_dim))
        return k, self.param("bias", nn.initializers.zeros_init(), (self.heads, self.head_dim))


class _OutLoop(nn.Module):
    """Output projection of per-head contexts [(B, L, dh)] * H with DenseGeneral(D, axis=(-2, -1))'s
    parameters: one matmul on the concatenation, or the sum of H per-head matmuls."""
    features: int
    use_bias: bool
    kernel_init: object
    per_head_sum: bool

    @nn.compact
    def __call__(self, ctxs, heads: int, head_dim: int):
        w = self.param("kernel", _flat_init(self.kernel_init, 2), (heads, head_dim, self.features))
        if self.per_head_sum:
            y = sum(c @ w[h] for h, c in enumerate(ctxs))
        else:
            y = jnp.concatenate(ctxs, axis=-1) @ w.reshape(heads * head_dim, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y


class LayoutAttention(nn.Module):
    """The attention of sibert.model with configurable layouts (see the module docstring)."""
    cfg: ModelConfig
    variant: str = "bhld"

    @nn.compact
    def __call__(self, x, deterministic: bool = True, attention_mask=None):
        cfg = self.cfg
        si = cfg.scale_invariant
        key_mask = _key_mask(attention_mask)
        H, dh = cfg.heads, cfg.hidden // cfg.heads
        init = nn.initializers.truncated_normal(cfg.init_std)
        if self.variant in ("hb", "hb_sum"):
            return self._heads_major(x, key_mask, deterministic, H, dh, init)
        if self.variant in ("loop_cat", "loop_sum"):
            return self._head_loop(x, key_mask, deterministic, H, dh, init)
        to_bhld = lambda name: _Proj(H, dh, "bld,dhk->bhlk", "h1k", init, name=name)
        q = to_bhld("query")(x)
        if self.variant == "kT":
            k = _Proj(H, dh, "bld,dhk->bhkl", "hk1", init, name="key")(x)      # (B, H, dh, L)
            scores = jnp.einsum("bhqd,bhdk->bhqk", q, k)
        else:
            k = to_bhld("key")(x)
            scores = jnp.einsum("bhqd,bhkd->bhqk", q, k)
        v = to_bhld("value")(x)
        probs = attention_probs(cfg, scores, key_mask)
        probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
        if self.variant == "bhld_ctx_bqhd":
            ctx = jnp.einsum("bhqk,bhkd->bqhd", probs, v)
            return _Out(cfg.hidden, "bqhd,hdo->bqo", not si, init, name="out")(ctx, H, dh)
        ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v)
        return _Out(cfg.hidden, "bhqd,hdo->bqo", not si, init, name="out")(ctx, H, dh)

    def _head_loop(self, x, key_mask, deterministic, H, dh, init):
        """One head at a time (H is small): q_h = x W_q[:, h] + b_q[h] is a plain (B L, D) x
        (D, dh) matmul with a (B, L, dh) result, attention batched over b only; the output
        projection is one matmul on the heads' contexts concatenated along the last axis
        (``loop_cat``) or the sum over heads of ctx_h W_o[h] (``loop_sum``)."""
        cfg = self.cfg
        si = cfg.scale_invariant
        km = None if key_mask is None else key_mask[:, 0]                    # (B, 1, L)
        params = {n: _QKVParams(H, dh, init, name=n)(x.shape[-1]) for n in ("query", "key", "value")}
        ctxs = []
        for h in range(H):
            q, k, v = (x @ params[n][0][:, h] + params[n][1][h] for n in ("query", "key", "value"))
            scores = jnp.einsum("bqd,bkd->bqk", q, k)
            probs = attention_probs(cfg, scores, km)
            probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
            ctxs.append(jnp.einsum("bqk,bkd->bqd", probs, v))
        return _OutLoop(cfg.hidden, not si, init, self.variant == "loop_sum", name="out")(ctxs, H, dh)

    def _heads_major(self, x, key_mask, deterministic, H, dh, init):
        """Heads the LEADING batch dimension: x broadcast to (H, B, L, D), q, k, v (H, B, L, dh)
        from batched-over-h matmuls, attention batched over (h, b); output projection either
        contracting (h, d) at once (``hb``) or batched over h then summed over h (``hb_sum``)."""
        cfg = self.cfg
        si = cfg.scale_invariant
        xh = jnp.broadcast_to(x, (H,) + x.shape)
        proj = lambda name: _Proj(H, dh, "hbld,dhk->hblk", "h11k", init, name=name)(xh)
        q, k, v = proj("query"), proj("key"), proj("value")
        scores = jnp.einsum("hbqd,hbkd->hbqk", q, k)
        km = None if key_mask is None else key_mask[None]
        probs = attention_probs(cfg, scores, km)
        probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
        ctx = jnp.einsum("hbqk,hbkd->hbqd", probs, v)
        spec = "hbqd,hdo->bqo" if self.variant == "hb" else "hbqd,hdo->hbqo"
        return _Out(cfg.hidden, spec, not si, init, name="out")(ctx, H, dh)


def _variant_cls(name: str, current):
    if name == "legacy":   # the model's attention when these layouts were measured (unchanged since)
        return sm.SelfAttention
    if name == "current":
        return current
    if name in VARIANTS[2:]:
        return functools.partial(LayoutAttention, variant=name)
    raise ValueError(f"variants: unknown value {name!r}; allowed: {', '.join(VARIANTS)}")


VARIANTS = ("legacy", "current", "bhld", "bhld_ctx_bqhd", "kT", "hb", "hb_sum", "loop_cat", "loop_sum")
_CURRENT = sm.SelfAttention


@contextlib.contextmanager
def attention(cls):
    """sibert.model builds its layers with this attention class inside the block."""
    old = sm.SelfAttention
    sm.SelfAttention = cls
    try:
        yield
    finally:
        sm.SelfAttention = old


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def numerics(cfg, classes: Dict[str, type], seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Loss / gradient relative differences of each variant vs legacy; init trees bit-equal."""
    from benchmarks.sibert_step import synthetic_batch

    mcfg = ModelConfig.from_train(cfg)
    batch = {k: jnp.asarray(v) for k, v in synthetic_batch(cfg, seed).items()}
    out, ref = {}, None
    for name, cls in classes.items():
        with attention(cls):
            params = sm.init_params(mcfg, jax.random.PRNGKey(seed), cfg.seq_len)
            model = sm.MLMModel(mcfg)
            (loss, _), grads = jax.jit(jax.value_and_grad(
                lambda p: sm.mlm_loss(model, p, batch), has_aux=True))(params)
        if ref is None:
            ref = (params, loss, grads)
            continue
        p0, l0, g0 = ref
        same_tree = jax.tree.structure(params) == jax.tree.structure(p0)
        bit_equal = same_tree and all(bool(jnp.array_equal(a, b)) for a, b in
                                      zip(jax.tree.leaves(params), jax.tree.leaves(p0)))
        # leaves whose exact gradient is 0 (BERT's key bias: softmax is shift invariant) hold
        # rounding noise only; they are compared to the whole gradient's norm instead
        gl, gl0 = jax.tree.leaves(grads), jax.tree.leaves(g0)
        total = float(np.sqrt(sum(float(jnp.sum(jnp.square(b))) for b in gl0)))
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(g0)]
        live = [(a, b) for a, b in zip(gl, gl0) if float(jnp.linalg.norm(b)) > 1e-8 * total]
        rels = {p: _rel(a, b) for p, a, b in zip(paths, gl, gl0) if float(jnp.linalg.norm(b)) > 1e-8 * total}
        dead = [(a, b) for a, b in zip(gl, gl0) if float(jnp.linalg.norm(b)) <= 1e-8 * total]
        out[name] = {"init_bit_equal": bit_equal, "loss_rel": _rel(loss, l0),
                     "grad_rel_max": max(_rel(a, b) for a, b in live),
                     "grad_rel_max_leaf": max(rels, key=rels.__getitem__),
                     "grad_rel_median": float(np.median(list(rels.values()))),
                     "grad_rel_total": float(np.sqrt(sum(float(jnp.sum(jnp.square(a - b)))
                                                         for a, b in zip(gl, gl0)))) / total,
                     "zero_grad_leaves": len(dead),
                     "zero_grad_leaves_diff_vs_total": max(
                         (float(jnp.linalg.norm(a - b)) / total for a, b in dead), default=0.0)}
    return out


def hlo_copies(cfg, classes: Dict[str, type], min_bytes: int = 1 << 16) -> Dict[str, Dict[str, float]]:
    """Activation-sized (>= ``min_bytes``) f32 copy / transpose instructions (``copy.N``,
    ``transpose.N``, ``transpose_copy_fusion``, ``copy_bitcast_fusion``, ...) in the ENTRY
    computation of each variant's compiled training step: count and MiB."""
    import re

    from benchmarks.sibert_step import make_step

    out = {}
    for name, cls in classes.items():
        with attention(cls):
            _, info = make_step(cfg)
            txt = info["step_fn"].lower(info["box"]["state"], info["batch"]).compile().as_text()
        n, nbytes = 0, 0
        for line in txt[txt.index("\nENTRY"):].splitlines()[1:]:
            m = re.match(r"\s*(?:ROOT )?%(\S+) = f32\[([\d,]*)\]\S* \w+\(", line)
            if m and re.match(r"(transpose|copy)", m.group(1)) and m.group(2):
                size = 4 * int(np.prod([int(d) for d in m.group(2).split(",")]))
                if size >= min_bytes:
                    n, nbytes = n + 1, nbytes + size
        out[name] = {"count": n, "MiB": round(nbytes / 2**20, 1)}
    return out


def run(preset: str, model: str, variants, rounds: int, seed: int = 0) -> Dict[str, object]:
    from benchmarks.sibert_step import make_step, tiny_config
    from benchmarks.timing import loadavg

    if variants[0] != "legacy":
        variants = ["legacy"] + [v for v in variants if v != "legacy"]
    cfg = tiny_config(preset, model)
    classes = {v: _variant_cls(v, _CURRENT) for v in variants}
    num = numerics(cfg, classes, seed)
    steps = {}
    for name, cls in classes.items():
        with attention(cls):
            call, _ = make_step(cfg, seed=seed)
            for _ in range(2):                      # compile + one warm call
                jax.block_until_ready(call())
        steps[name] = call
    load0 = loadavg()
    others = [v for v in variants if v != "legacy"]
    # per round and variant v: legacy and v back to back (order alternating by round), so each
    # ratio compares two ADJACENT calls; wall time and process CPU time (all threads) are kept
    # (CPU time does not count the time other processes held the cores)
    pairs: Dict[str, Dict[str, list]] = {v: {"wall": [], "cpu": []} for v in others}
    walls: Dict[str, list] = {v: [] for v in variants}
    for r in range(rounds):
        for v in (others if r % 2 == 0 else others[::-1]):
            got = {}
            for name in (("legacy", v) if r % 2 == 0 else (v, "legacy")):
                c0, t0 = time.process_time(), time.perf_counter()
                jax.block_until_ready(steps[name]())
                got[name] = (time.perf_counter() - t0, time.process_time() - c0)
                walls[name].append(got[name][0])
            pairs[v]["wall"].append(got[v][0] / got["legacy"][0])
            pairs[v]["cpu"].append(got[v][1] / got["legacy"][1])
    load1 = loadavg()
    res: Dict[str, object] = {"preset": preset, "model": model, "rounds": rounds, "load_start": load0,
                              "load_end": load1, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                              "legacy_median_s": statistics.median(walls["legacy"])}
    table: Dict[str, Dict[str, object]] = {}
    for name in others:
        w, c = pairs[name]["wall"], pairs[name]["cpu"]
        table[name] = {
            "median_s": statistics.median(walls[name]),
            "ratio_wall": statistics.median(w),   # time ratio vs legacy: < 1 = faster than legacy
            "ratio_cpu": statistics.median(c),
            "ratio_wall_q25_q75": [float(np.percentile(w, 25)), float(np.percentile(w, 75))],
            "ratio_cpu_q25_q75": [float(np.percentile(c, 25)), float(np.percentile(c, 75))],
            "rounds_faster_wall": sum(x < 1.0 for x in w), "rounds_faster_cpu": sum(x < 1.0 for x in c),
            **num.get(name, {}),
        }
    res["variants"] = table
    return res


def main(argv: Optional[list] = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--model", default="sibert", choices=("sibert", "bert"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", default="")
    ap.add_argument("--hlo-copies", action="store_true",
                    help="only count the activation-sized copies/transposes of each compiled step")
    a = ap.parse_args(argv)
    if a.hlo_copies:
        from benchmarks.sibert_step import tiny_config

        cfg = tiny_config(a.preset, a.model)
        print(json.dumps(hlo_copies(cfg, {v: _variant_cls(v, _CURRENT) for v in a.variants.split(",")}), indent=1))
        return
    res = run(a.preset, a.model, a.variants.split(","), a.rounds)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
