"""``scaleinv audit`` factories for the project's SIBERT / BERT MLM models (``sibert.model``).

Every factory returns ``(apply_fn, params, batch, options)``: ``apply_fn(params, batch) -> loss``
and the audit options (target group "encoder", target degree 0, expectation "(2;2)" per layer)::

    scaleinv audit sibert.audit_factories:sibert --max-depth 3
    scaleinv audit sibert.audit_factories:bert --max-depth 2
    scaleinv audit sibert.audit_factories:sibert_softmax     # ablation: SIBERT with softmax attention
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sibert", "bert", "sibert_softmax"]


def _mlm(scale_invariant: bool, layers: int, hidden: int, heads: int, ffn: int, vocab: int,
         seq_len: int, batch_size: int, seed: int, variant: str = ""):
    from sibert.model import ENCODER, MLMModel, ModelConfig, init_params, mlm_loss

    cfg = ModelConfig(vocab_size=vocab, hidden=hidden, layers=layers, heads=heads, ffn=ffn,
                      max_positions=seq_len, scale_invariant=scale_invariant, variant=variant)
    params = jax.jit(lambda k: init_params(cfg, k, seq_len=seq_len))(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    n_pred = max(1, seq_len // 6)
    batch = {
        "tokens": jnp.asarray(rng.integers(0, vocab, (batch_size, seq_len)), jnp.int32),
        "mlm_positions": jnp.asarray(rng.integers(0, seq_len, (batch_size, n_pred)), jnp.int32),
        "mlm_labels": jnp.asarray(rng.integers(0, vocab, (batch_size, n_pred)), jnp.int32),
        "mlm_weights": jnp.ones((batch_size, n_pred), jnp.float32),
    }
    model = MLMModel(cfg)

    def apply_fn(params, batch):
        return mlm_loss(model, params, batch)[0]

    options = {"target_group": ENCODER, "target_degree": 0, "expect": {r"encoder/layer_\d+": "(2;2)"}}
    return apply_fn, params, batch, options


def sibert(layers: int = 2, hidden: int = 32, heads: int = 2, ffn: int = 64, vocab: int = 97,
           seq_len: int = 16, batch_size: int = 2, seed: int = 0):
    """The project's SIBERT MLM (sibert.model, scale_invariant=True), small random instance."""
    return _mlm(True, layers, hidden, heads, ffn, vocab, seq_len, batch_size, seed)


def bert(layers: int = 2, hidden: int = 32, heads: int = 2, ffn: int = 64, vocab: int = 97,
         seq_len: int = 16, batch_size: int = 2, seed: int = 0):
    """The project's BERT MLM baseline (sibert.model, scale_invariant=False), same sizes."""
    return _mlm(False, layers, hidden, heads, ffn, vocab, seq_len, batch_size, seed)


def sibert_softmax(layers: int = 2, hidden: int = 32, heads: int = 2, ffn: int = 64, vocab: int = 97,
                   seq_len: int = 16, batch_size: int = 2, seed: int = 0):
    """Ablation (sibert.model VARIANTS["sibert-softmax"]): SIBERT with softmax attention instead of
    the scale-invariant relu(s) / sum relu(s); every other block is SIBERT's. Not scale invariant:
    softmax is not homogeneous, so each layer's attention block breaks the degree."""
    return _mlm(True, layers, hidden, heads, ffn, vocab, seq_len, batch_size, seed, variant="sibert-softmax")
