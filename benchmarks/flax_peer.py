"""A plain flax.linen BERT training step: the reference point for "is the gap in our step or in JAX?".

Issue 16 reports that a plain flax.linen BERT of the same shapes once ran 1.16x HF torch's
tokens/s (on another machine), so the SIBERT step's 0.6-0.8x must be waste in our step. This
module is that plain model, written the textbook way and sharing NO code with ``sibert/``:
``nn.Embed`` (word + position), ``nn.LayerNorm``, ``nn.MultiHeadDotProductAttention`` (post-LN
blocks, exact-erf GELU FFN, like HF ``BertModel`` with ``type_vocab_size=1`` and dropout 0),
the MLM head on the M masked positions only (dense + GELU + LayerNorm + tied decoder + bias,
as HF's ``BertLMPredictionHead``), trained by ``optax.adamw`` inside one ``jax.jit`` with the
state donated -- no mesh, no shardings, no per-step diagnostics, no parameter groups.

If this step runs at the same speed as our BERT step (``sibert.model`` + ``sibert.train``), the
trainer adds no waste and the ratio to HF is what JAX/XLA:CPU itself reaches at these shapes.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

__all__ = ["make_plain_flax_step"]


def _modules():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    gelu = lambda x: jax.nn.gelu(x, approximate=False)  # noqa: E731  (HF "gelu")

    class Block(nn.Module):
        heads: int
        ffn: int

        @nn.compact
        def __call__(self, x):
            d = x.shape[-1]
            a = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=d, out_features=d)(x)
            x = nn.LayerNorm(epsilon=1e-12)(x + a)
            h = nn.Dense(d)(gelu(nn.Dense(self.ffn)(x)))
            return nn.LayerNorm(epsilon=1e-12)(x + h)

    class PlainBert(nn.Module):
        vocab: int
        hidden: int
        layers: int
        heads: int
        ffn: int
        max_positions: int

        @nn.compact
        def __call__(self, tokens, positions):
            emb = nn.Embed(self.vocab, self.hidden)
            x = emb(tokens) + nn.Embed(self.max_positions, self.hidden)(jnp.arange(tokens.shape[1]))[None]
            x = nn.LayerNorm(epsilon=1e-12)(x)
            for _ in range(self.layers):
                x = Block(self.heads, self.ffn)(x)
            xm = jnp.take_along_axis(x, positions[..., None], axis=1)           # (B, M, D)
            y = nn.LayerNorm(epsilon=1e-12)(gelu(nn.Dense(self.hidden)(xm)))
            bias = self.param("decoder_bias", nn.initializers.zeros, (self.vocab,))
            return emb.attend(y) + bias                                          # (B, M, V)

    return PlainBert


def make_plain_flax_step(cfg, batch: Dict[str, np.ndarray], seed: int = 0
                         ) -> Tuple[Callable[[], Any], Dict[str, Any]]:
    """Zero-argument callable running one plain-flax BERT training step on ``batch`` (the
    synthetic batch of :func:`benchmarks.sibert_step.synthetic_batch`); info {n_params}.
    Shapes from ``cfg`` (vocab_size, hidden, layers, heads, ffn, max_positions)."""
    import jax
    import jax.numpy as jnp
    import optax

    model = _modules()(cfg.vocab_size, cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.max_positions)
    b = {k: jnp.asarray(batch[k]) for k in ("tokens", "mlm_positions", "mlm_labels", "mlm_weights")}
    params = model.init(jax.random.PRNGKey(seed), b["tokens"], b["mlm_positions"])["params"]
    tx = optax.adamw(1e-3, b1=cfg.adam_b1, b2=cfg.adam_b2, weight_decay=0.01)

    def loss_fn(p, bb):
        logits = model.apply({"params": p}, bb["tokens"], bb["mlm_positions"])
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, bb["mlm_labels"])
        w = bb["mlm_weights"]
        return (nll * w).sum() / jnp.maximum(w.sum(), 1.0)

    def _step(state, bb):
        p, o = state
        loss, g = jax.value_and_grad(loss_fn)(p, bb)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), loss

    step_fn = jax.jit(_step, donate_argnums=0)
    box = [(params, tx.init(params))]

    def step():
        box[0], loss = step_fn(box[0], b)
        return loss

    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    return step, {"n_params": n}
