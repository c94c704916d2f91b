"""Example models and factories for ``scaleinv audit``.

* The blocks of the paper's Table 2 as small flax modules (SIBERT-independent), with their
  claimed "(input degree; output degree)":
  input (0;1) :class:`InputEmbedding` · adding a bias (1;1) :class:`AddBias` · LayerNorm without
  affine (x;0) / with affine (x;1) :func:`layer_norm` · linear (x;x+1) :class:`Linear` · embedding
  (x;x+1) :class:`Embedding` · 2-layer ReLU feed-forward (0;2) :class:`FeedForward` · SI attention
  (x,x,x;x+2) :class:`SIAttention` · PreNorm encoder layer (2;2) :class:`EncoderLayer`.
* :func:`toy_stack`: a SIBERT-like stack built from them (tokens -> embedding -> bias-free
  projection -> PreNorm layers -> non-affine LN -> classifier head), optionally broken on purpose
  (``softmax_at``: that layer uses softmax attention; ``bias_at``: that layer's attention output
  projection gets a bias, i.e. a bias added to a 2-homogeneous tensor; ``affine_final_ln``: the
  last LayerNorm is affine).

Every factory returns ``(apply_fn, params, batch, options)``: ``apply_fn(params, batch) -> loss``
and the audit options (target group "encoder", target degree 0, expectation "(2;2)" per layer).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["InputEmbedding", "AddBias", "layer_norm", "Linear", "Embedding", "FeedForward",
           "SIAttention", "SoftmaxAttention", "EncoderLayer", "ToyEncoder", "ToyModel", "toy_stack",
           "softplus_model", "TINY_EPS"]

TINY_EPS = 1e-30   # LayerNorm / attention epsilon small enough not to break homogeneity in float32
_init = nn.initializers.normal(0.5)


class InputEmbedding(nn.Module):
    """tokens (B, L) int -> E[tok] + P[pos]: data in (degree 0), 1-homogeneous out: (0;1)."""
    vocab: int
    max_len: int
    dim: int

    @nn.compact
    def __call__(self, tokens):
        E = self.param("word", _init, (self.vocab, self.dim))
        P = self.param("position", _init, (self.max_len, self.dim))
        return jnp.take(E, tokens, axis=0) + P[: tokens.shape[-1]]


class AddBias(nn.Module):
    """h + b: homogeneous only if h has the bias's degree 1: (1;1)."""

    @nn.compact
    def __call__(self, h):
        return h + self.param("bias", _init, (h.shape[-1],))


def layer_norm(affine: bool, name: Optional[str] = None) -> nn.LayerNorm:
    """LayerNorm with a tiny epsilon: (x;0) without affine, (x;1) with scale and bias."""
    return nn.LayerNorm(epsilon=TINY_EPS, use_bias=affine, use_scale=affine, use_fast_variance=False,
                        scale_init=_init if affine else nn.initializers.ones,
                        bias_init=_init if affine else nn.initializers.zeros, name=name)


class Linear(nn.Module):
    """h W, no bias: (x;x+1)."""
    features: int

    @nn.compact
    def __call__(self, h):
        return nn.Dense(self.features, use_bias=False, kernel_init=_init, name="dense")(h)


class Embedding(nn.Module):
    """A (soft) one-hot input times the table: h E, (x;x+1) (a float input, unlike tokens)."""
    vocab: int
    dim: int

    @nn.compact
    def __call__(self, onehot):
        return onehot @ self.param("table", _init, (self.vocab, self.dim))


class FeedForward(nn.Module):
    """relu(h W1 + b1) W2: the bias needs h W1 of degree 1, so h of degree 0: (0;2)."""
    hidden: int
    out: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, h):
        act = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "softplus": jax.nn.softplus}[self.activation]
        y = act(nn.Dense(self.hidden, use_bias=True, kernel_init=_init, bias_init=_init, name="fc1")(h))
        return nn.Dense(self.out, use_bias=False, kernel_init=_init, name="fc2")(y)


class SIAttention(nn.Module):
    """sum_i N(relu(Q W^Q_i (K W^K_i)^T)) V W^V_i W^O_i, N row normalisation: (x,x,x;x+2).

    ``out_bias=True`` adds a bias after W^O (a bias on a (x+2)-homogeneous tensor: broken)."""
    dim: int
    heads: int = 2
    softmax: bool = False
    out_bias: bool = False

    @nn.compact
    def __call__(self, q_in, k_in, v_in):
        dh = self.dim // self.heads
        proj = lambda name: nn.DenseGeneral((self.heads, dh), use_bias=False, kernel_init=_init, name=name)
        q, k, v = proj("query")(q_in), proj("key")(k_in), proj("value")(v_in)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if self.softmax:
            p = jax.nn.softmax(s / np.sqrt(dh), axis=-1)
        else:
            a = jax.nn.relu(s)
            p = a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), TINY_EPS)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", p, v)
        return nn.DenseGeneral(self.dim, axis=(-2, -1), use_bias=self.out_bias, kernel_init=_init,
                               bias_init=_init, name="out")(ctx)


def SoftmaxAttention(dim: int, heads: int = 2, name: Optional[str] = None) -> SIAttention:
    """BERT's softmax attention (not homogeneous for any input degree)."""
    return SIAttention(dim, heads, softmax=True, name=name)


class EncoderLayer(nn.Module):
    """PreNorm: h + A(LN h, LN h, LN h), then h + F(LN h); LN non-affine: (2;2)."""
    dim: int
    ffn: int
    heads: int = 2
    softmax: bool = False
    out_bias: bool = False

    @nn.compact
    def __call__(self, h):
        x = layer_norm(False, "ln_attn")(h)
        h = h + SIAttention(self.dim, self.heads, self.softmax, self.out_bias, name="attention")(x, x, x)
        return h + FeedForward(self.ffn, self.dim, name="ffn")(layer_norm(False, "ln_ffn")(h))


class ToyEncoder(nn.Module):
    """tokens -> E[tok]+P[pos] (1) -> W_in (2) -> PreNorm layers (2) -> LN (0)."""
    vocab: int = 11
    max_len: int = 8
    dim: int = 8
    ffn: int = 16
    layers: int = 3
    softmax_at: Optional[int] = None
    bias_at: Optional[int] = None
    affine_final_ln: bool = False

    @nn.compact
    def __call__(self, tokens):
        h = InputEmbedding(self.vocab, self.max_len, self.dim, name="embed")(tokens)
        h = Linear(self.dim, name="embed_proj")(h)
        for i in range(self.layers):
            h = EncoderLayer(self.dim, self.ffn, softmax=(i == self.softmax_at), out_bias=(i == self.bias_at),
                             name=f"layer_{i}")(h)
        return layer_norm(self.affine_final_ln, "final_ln")(h)


class ToyModel(nn.Module):
    """Encoder + classifier head (Dense with bias on the 0-homogeneous encoder output)."""
    layers: int = 3
    softmax_at: Optional[int] = None
    bias_at: Optional[int] = None
    affine_final_ln: bool = False
    classes: int = 5

    @nn.compact
    def __call__(self, tokens):
        z = ToyEncoder(layers=self.layers, softmax_at=self.softmax_at, bias_at=self.bias_at,
                       affine_final_ln=self.affine_final_ln, name="encoder")(tokens)
        return nn.Dense(self.classes, kernel_init=_init, bias_init=_init, name="head")(z)


def _xent(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1))


def toy_stack(layers: int = 3, softmax_at: Optional[int] = None, bias_at: Optional[int] = None,
              affine_final_ln: bool = False, seed: int = 0, batch_size: int = 2, dtype=jnp.float32):
    """A SIBERT-like stack from the Table-2 blocks; params {"encoder", "head"} (the groups).

    Loss: token-level cross-entropy of the head's logits; 0-homogeneous in "encoder" unless
    broken by ``softmax_at`` / ``bias_at`` (layer index) or ``affine_final_ln`` (the encoder
    output becomes 1-homogeneous, so the head's bias no longer matches its degree)."""
    enc = ToyEncoder()
    model = ToyModel(layers=layers, softmax_at=softmax_at, bias_at=bias_at, affine_final_ln=affine_final_ln)
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, enc.vocab, (batch_size, enc.max_len)), jnp.int32)
    labels = jnp.asarray(rng.integers(0, 5, (batch_size, enc.max_len)), jnp.int32)
    p = jax.jit(model.init)(jax.random.PRNGKey(seed), tokens)["params"]   # jit: one compile, not one per op
    params = jax.tree.map(lambda a: a.astype(jnp.dtype(dtype)), dict(p))

    def apply_fn(params, batch):
        logits = model.apply({"params": params}, batch["tokens"])
        return _xent(logits, batch["labels"])

    options = {"target_group": "encoder", "target_degree": 0, "expect": {r"encoder/layer_\d+": "(2;2)"}}
    return apply_fn, params, {"tokens": tokens, "labels": labels}, options


def softplus_model(seed: int = 0):
    """A non-homogeneous model: mean(softplus(x W1) W2); the audit must say "not homogeneous"."""
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(4, 6)), jnp.float32)
    model = FeedForward(8, 3, activation="softplus")
    params = jax.jit(model.init)(jax.random.PRNGKey(seed), x)["params"]

    def apply_fn(params, batch):
        return jnp.mean(model.apply({"params": params}, batch) ** 2)

    return apply_fn, params, x
