"""BERT and SIBERT (scale-invariant BERT, Li et al. ICML 2022) masked language models, one file.

``ModelConfig.scale_invariant`` switches between the two:

=====================  ======================================  ======================================
                        BERT (``scale_invariant=False``)        SIBERT (``scale_invariant=True``)
=====================  ======================================  ======================================
attention probs         softmax(q k^T / sqrt(d_k))              p_ij = relu(s_ij) / max(sum_j relu(s_ij), eps)
                                                                 with s = q k^T (no 1/sqrt(d_k): it cancels)
block order             PostNorm: h = LN(h + f(h))              PreNorm: h = h + f(LN(h))
activation              GeLU (``hidden_act``: exact erf "gelu"   ReLU
                        as BERT / HF, or tanh "gelu_new")
LayerNorm               affine (scale, bias)                    no affine inside the encoder
biases                  everywhere                              only where added to a 1-homogeneous tensor
embedding output        LN_affine(E[tok] + P[pos])              (E[tok] + P[pos]) W_in        (no bias)
encoder output          last PostNorm LN                        LN(h_L), non-affine
MLM decoder             y E^T + b          (tied)               s * y (E / ||E||_F)^T + b     (tied, normalised)
=====================  ======================================  ======================================

Homogeneity bookkeeping for SIBERT (paper Table 2, degree in the ENCODER parameters jointly;
the encoder group is ``params["encoder"]`` = word + position tables, W_in, all layers):

* E[tok] + P[pos] is 1-homogeneous; the bias-free projection W_in makes the residual stream
  h_0 2-homogeneous ("embedding (x; x+1)", "linear (x; x+1)").
* PreNorm layer, input h 2-homogeneous: LN(h) is 0-homogeneous; q = LN(h) W_q + b_q, k, v likewise
  are 1-homogeneous (a bias added to a 1-homogeneous tensor is allowed); s = q k^T is 2-homogeneous
  and p = N(relu(s)) 0-homogeneous; p v W_o is 2-homogeneous (W_o has NO bias). The FFN
  relu(LN(h) W_1 + b_1) W_2 is 2-homogeneous (W_2 has NO bias). So h + f(LN(h)) stays
  2-homogeneous: "encoder layer (2; 2)".
* The encoder ends with a non-affine LN, so its output z is 0-homogeneous: scale invariant.
* The MLM head (dense + act + affine LN + decoder + bias) is NOT scale invariant and lives in
  its own group ``params["head"]`` (trained by LAMB in the paper). The decoder is tied to the word
  table E, which is an encoder parameter: to keep the loss EXACTLY 0-homogeneous in the encoder
  group the head uses E / ||E||_F (0-homogeneous in E) times a learnable head scalar
  ``logit_scale`` initialised to init_std sqrt(V D), the expected ||E||_F at init, so at
  initialisation the SIBERT head equals the usual tied decoder.

Hence loss(c * encoder, head) = loss(encoder, head) for all c > 0, up to the two eps below
(tested with :func:`scaleinv.homogeneity.estimate_degree` for c in [1e-3, 1e3]).

Degenerate cases (our choices; the paper gives no rule):

* SI attention, all s_ij <= 0 in a row: the denominator is max(sum_j relu(s_ij), eps) with
  eps = ``attn_eps`` (default 1e-30), so that row's probabilities are all ZERO (the token attends
  to nothing, its attention output is 0; no NaN, no inf). eps only breaks exact invariance when
  the row sum is below eps, i.e. at (or extremely near) this degenerate case.
* SIBERT LayerNorm: (x - mean) / sqrt(var + ln_eps) with ``ln_eps`` = 1e-30 (not BERT's 1e-12):
  the residual stream is 2-homogeneous, so scaling the encoder by c in [1e-3, 1e3] scales var by
  c^4 in [1e-12, 1e12]; a larger eps would break invariance for small c.

The MLM head is applied to the masked positions only (``mlm_positions``), which is what the
loss needs and much cheaper than the full-vocabulary projection at every position.

Padding (``attention_mask`` (B, L): 1 = real token, 0 = padding; ``None`` = no padding, the
packed pretraining batches, computed exactly as without the argument): a padded KEY gets no
attention weight, so the ids at pad positions cannot change the outputs at real positions.

* BERT: the additive bias of BERT / Hugging Face, s_ij / sqrt(d_k) + (1 - m_j) * finfo.min
  before the softmax (exp underflows to exactly 0; an all-padding row, which only a padded QUERY
  row could see if every key were padding, is uniform, as in HF).
* SIBERT: p_ij = m_j relu(s_ij) / max(sum_j m_j relu(s_ij), eps): masked keys get exactly zero
  weight and an all-masked row gives zeros (no NaN). m does not depend on the parameters, so
  the loss stays 0-homogeneous in the encoder.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sibert.config import PRECISIONS

__all__ = ["ModelConfig", "ModelSpec", "SIBERT_SPEC", "BERT_SPEC", "VARIANTS", "HIDDEN_ACTS", "activation", "si_attention_probs", "SelfAttention", "EncoderLayer", "Encoder",
           "MLMHead", "MLMModel", "mlm_loss", "init_params", "ENCODER", "HEAD"]

ENCODER, HEAD = "encoder", "head"


HIDDEN_ACTS = {
    # Hugging Face's names (``BertConfig.hidden_act``): BERT uses the exact erf GELU
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The architecture as a spec; the blocks below are composed from it (no per-model branches).

    attention: "si" (p = relu(s) / max(sum relu(s), eps), :func:`si_attention_probs`) | "softmax"
      (softmax(s / sqrt(d_head)), :func:`softmax_attention_probs`);
    norm: "pre" (h + f(LN(h)), LN non-affine with ``ln_eps``, a final non-affine LN) | "post"
      (LN(h + f(h)), affine LN, eps 1e-12), see :data:`RESIDUALS`;
    activation: a name of :data:`HIDDEN_ACTS` (FFN and head transform);
    bias: "homogeneous" (biases only where added to a 1-homogeneous tensor: q, k, v, fc1; none on
      the attention output and fc2) | "all";
    embedding: "proj" ((E[tok] + P[pos]) W_in, no bias) | "ln" (affine LN(E[tok] + P[pos]));
    decoder: "normalized" (s y (E / ||E||_F)^T + b) | "tied" (y E^T + b)."""
    attention: str = "si"
    norm: str = "pre"
    activation: str = "relu"
    bias: str = "homogeneous"
    embedding: str = "proj"
    decoder: str = "normalized"

    def __post_init__(self):
        allowed = {"attention": ("si", "softmax"), "norm": ("pre", "post"), "activation": tuple(HIDDEN_ACTS),
                   "bias": ("homogeneous", "all"), "embedding": ("proj", "ln"), "decoder": ("normalized", "tied")}
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name}: unknown value {getattr(self, name)!r}; allowed: {', '.join(values)}")


SIBERT_SPEC = ModelSpec()
BERT_SPEC = ModelSpec(attention="softmax", norm="post", activation="gelu", bias="all", embedding="ln", decoder="tied")
# named variants for ModelConfig.variant: the two presets and the ablations (paper Table 2 invites them)
VARIANTS = {"sibert": SIBERT_SPEC, "bert": BERT_SPEC,
            "sibert-softmax": dataclasses.replace(SIBERT_SPEC, attention="softmax")}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 8192
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    ffn: int = 512
    max_positions: int = 128
    scale_invariant: bool = True
    init_std: float = 0.02
    dropout: float = 0.0
    attn_eps: float = 1e-30
    ln_eps: float = 1e-30           # SIBERT LayerNorms; BERT uses 1e-12 (its standard value)
    hidden_act: str = "gelu"        # BERT only: "gelu" (exact erf, BERT / HF) | "gelu_new" (tanh)
    precision: str = "f32"          # "f32" | "bf16": matmul / activation dtype (parameters stay float32)
    variant: str = ""               # "" = the preset of scale_invariant; else a name of VARIANTS (ablations)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: unknown value {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.variant and self.variant not in VARIANTS:
            raise ValueError(f"variant: unknown value {self.variant!r}; allowed: \"\", {', '.join(VARIANTS)}")

    @property
    def spec(self) -> "ModelSpec":
        """The architecture (:class:`ModelSpec`): ``VARIANTS[variant]``, or the SIBERT / BERT preset
        selected by ``scale_invariant`` (BERT's activation is ``hidden_act``)."""
        if self.variant:
            return VARIANTS[self.variant]
        return SIBERT_SPEC if self.scale_invariant else dataclasses.replace(BERT_SPEC, activation=self.hidden_act)

    @property
    def compute_dtype(self):
        """The flax ``dtype`` of every Dense / LayerNorm: None (float32, inferred from the float32
        parameters: the code path of every run before ``precision`` existed) or ``jnp.bfloat16``."""
        return None if self.precision == "f32" else jnp.bfloat16

    @classmethod
    def from_train(cls, cfg) -> "ModelConfig":
        return cls(vocab_size=cfg.vocab_size, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                   ffn=cfg.ffn, max_positions=cfg.max_positions,
                   scale_invariant=(cfg.model == "sibert"), init_std=cfg.init_std,
                   dropout=cfg.dropout, attn_eps=cfg.attn_eps, ln_eps=cfg.ln_eps,
                   hidden_act=cfg.hidden_act, precision=cfg.precision)




def activation(cfg: ModelConfig):
    """ReLU for SIBERT (1-homogeneous); ``cfg.hidden_act`` for BERT."""
    return HIDDEN_ACTS[cfg.spec.activation]


def si_attention_probs(scores: jax.Array, eps: float, key_mask: Optional[jax.Array] = None) -> jax.Array:
    """Scale-invariant attention: p_ij = m_j relu(s_ij) / max(sum_j m_j relu(s_ij), eps).

    0-homogeneous in ``scores`` (p(c s) = p(s), c > 0) whenever the row sum exceeds eps; a row
    with all s_ij <= 0 (or all keys masked) gives p_ij = 0 for all j (no NaN). ``key_mask``
    (broadcastable to ``scores``, 1 = real key, 0 = padding) is optional; None = all keys real."""
    a = jax.nn.relu(scores)
    if key_mask is not None:   # a select, not a product: finite gradients for an all-masked row
        a = jnp.where(key_mask > 0, a, jnp.zeros_like(a))
    return a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), eps)


def attention_probs(cfg: ModelConfig, scores: jax.Array, key_mask: Optional[jax.Array] = None) -> jax.Array:
    """SIBERT: :func:`si_attention_probs`; BERT: softmax(s / sqrt(d_head)), padded keys at
    finfo.min as in HF BERT (+ (1 - m) * finfo.min before the softmax). ``key_mask`` broadcasts
    to ``scores`` (1 = real key); None = all keys real."""
    return ATTENTION_PROBS[cfg.spec.attention](cfg, scores, key_mask)


def softmax_attention_probs(cfg: ModelConfig, scores: jax.Array, key_mask: Optional[jax.Array] = None) -> jax.Array:
    """softmax(s / sqrt(d_head)); padded keys at finfo.min (HF BERT's additive mask)."""
    logits = scores / math.sqrt(cfg.hidden // cfg.heads)
    if key_mask is not None:
        logits = logits + (1.0 - key_mask.astype(logits.dtype)) * jnp.finfo(logits.dtype).min
    return jax.nn.softmax(logits, axis=-1)


def _key_mask(attention_mask: Optional[jax.Array]) -> Optional[jax.Array]:
    """(B, L) token mask -> (B, 1, 1, L) key mask for the (B, H, L_q, L_k) scores."""
    return None if attention_mask is None else attention_mask[:, None, None, :]


def _layer_norm(cfg: ModelConfig, affine: bool, name: str) -> nn.LayerNorm:
    """Affine LN (BERT, eps 1e-12) or the non-affine, tiny-eps LN of the SIBERT encoder."""
    return nn.LayerNorm(epsilon=1e-12 if affine else cfg.ln_eps, use_bias=affine, use_scale=affine,
                        use_fast_variance=False, dtype=cfg.compute_dtype, name=name)


def prenorm_residual(cfg: ModelConfig, h: jax.Array, f, name: str) -> jax.Array:
    """h + f(LN(h)), LN non-affine (eps ``ln_eps``): SIBERT's PreNorm block."""
    return h + f(_layer_norm(cfg, False, name)(h))


def postnorm_residual(cfg: ModelConfig, h: jax.Array, f, name: str) -> jax.Array:
    """LN(h + f(h)), affine LN: BERT's PostNorm block."""
    return _layer_norm(cfg, True, name)(h + f(h))


ATTENTION_PROBS = {"si": lambda cfg, s, m: si_attention_probs(s, cfg.attn_eps, m), "softmax": softmax_attention_probs}
RESIDUALS = {"pre": prenorm_residual, "post": postnorm_residual}


class SelfAttention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True,
                 attention_mask: Optional[jax.Array] = None) -> jax.Array:
        cfg = self.cfg
        all_bias = cfg.spec.bias == "all"
        key_mask = _key_mask(attention_mask)
        dh = cfg.hidden // cfg.heads
        init = nn.initializers.truncated_normal(cfg.init_std)
        dt = cfg.compute_dtype
        proj = lambda name: nn.DenseGeneral((cfg.heads, dh), use_bias=True, kernel_init=init, dtype=dt, name=name)
        q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)          # (B, L, H, dh)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)                           # (B, H, L, L)
        if dt is not None:   # bf16: the normalisation (softmax / relu sum) in float32, then back
            probs = attention_probs(cfg, scores.astype(jnp.float32), key_mask).astype(dt)
        else:
            probs = attention_probs(cfg, scores, key_mask)
        probs = nn.Dropout(cfg.dropout)(probs, deterministic=deterministic)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        # SIBERT: ctx is 1-homogeneous, ctx W_o 2-homogeneous: a bias here would break it.
        return nn.DenseGeneral(cfg.hidden, axis=(-2, -1), use_bias=all_bias, kernel_init=init, dtype=dt,
                               name="out")(ctx)


class FeedForward(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        init = nn.initializers.truncated_normal(cfg.init_std)
        act = activation(cfg)
        dt = cfg.compute_dtype
        y = act(nn.Dense(cfg.ffn, use_bias=True, kernel_init=init, dtype=dt, name="fc1")(x))
        y = nn.Dense(cfg.hidden, use_bias=cfg.spec.bias == "all", kernel_init=init, dtype=dt, name="fc2")(y)
        return nn.Dropout(cfg.dropout)(y, deterministic=deterministic)


class EncoderLayer(nn.Module):
    """PreNorm (SIBERT): h + f(LN(h)), LN non-affine.  PostNorm (BERT): LN(h + f(h)), affine."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, h: jax.Array, deterministic: bool = True,
                 attention_mask: Optional[jax.Array] = None) -> jax.Array:
        cfg = self.cfg
        attn, ffn = SelfAttention(cfg, name="attention"), FeedForward(cfg, name="ffn")
        residual = RESIDUALS[cfg.spec.norm]
        h = residual(cfg, h, lambda x: attn(x, deterministic, attention_mask), "ln_attn")
        return residual(cfg, h, lambda x: ffn(x, deterministic), "ln_ffn")


class Encoder(nn.Module):
    """tokens (B, L) [, attention_mask (B, L)] -> (hidden states (B, L, D), word table E (V, D)
    for the tied decoder). Outputs at padded positions are not meaningful."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens: jax.Array, deterministic: bool = True,
                 attention_mask: Optional[jax.Array] = None) -> Tuple[jax.Array, jax.Array]:
        cfg = self.cfg
        init = nn.initializers.truncated_normal(cfg.init_std)
        E = self.param("word_embeddings", init, (cfg.vocab_size, cfg.hidden))
        P = self.param("position_embeddings", init, (cfg.max_positions, cfg.hidden))
        x = jnp.take(E, tokens, axis=0) + P[None, : tokens.shape[1]]
        if cfg.spec.embedding == "proj":
            # 1-homogeneous -> 2-homogeneous, so the residual stream matches the blocks' degree.
            # Init std 1/sqrt(D) (variance preserving) so h_0 is of the embedding's size.
            w_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
            h = nn.Dense(cfg.hidden, use_bias=False, kernel_init=w_init, dtype=cfg.compute_dtype,
                         name="embed_proj")(x)
        else:
            h = _layer_norm(cfg, True, "embed_ln")(x)
        h = nn.Dropout(cfg.dropout)(h, deterministic=deterministic)
        for i in range(cfg.layers):
            h = EncoderLayer(cfg, name=f"layer_{i}")(h, deterministic, attention_mask)
        if cfg.spec.norm == "pre":
            h = _layer_norm(cfg, False, "final_ln")(h)  # 0-homogeneous encoder output
        return h, E


class MLMHead(nn.Module):
    """dense + act + affine LN + tied decoder + bias, on the gathered masked positions."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, h: jax.Array, E: jax.Array) -> jax.Array:
        cfg = self.cfg
        init = nn.initializers.truncated_normal(cfg.init_std)
        act = activation(cfg)
        dt = cfg.compute_dtype
        y = act(nn.Dense(cfg.hidden, kernel_init=init, dtype=dt, name="transform")(h))
        y = _layer_norm(cfg, True, "transform_ln")(y)
        bias = self.param("output_bias", nn.initializers.zeros, (cfg.vocab_size,))
        if cfg.spec.decoder == "normalized":
            scale = self.param("logit_scale", nn.initializers.constant(
                cfg.init_std * math.sqrt(cfg.vocab_size * cfg.hidden)), ())
            # y (s E / ||E||_F)^T = (y s / ||E||_F) E^T: the scalar goes on the (M, D) side,
            # not on the (V, D) table (no scaled copy of E; same value up to rounding).
            # ||E||_F in float32 (a norm) in both precisions.
            factor = scale / jnp.sqrt(jnp.sum(jnp.square(E)))
            y = y * (factor if dt is None else factor.astype(dt))
        if dt is None:
            return y @ E.T + bias
        # bf16: the (M, D) x (D, V) decoder matmul in bf16, the logits in float32 from here on
        return (y @ E.astype(dt).T).astype(jnp.float32) + bias


class MLMModel(nn.Module):
    """Encoder + MLM head; params = {"encoder": ..., "head": ...} (the two optimizer groups)."""
    cfg: ModelConfig

    def setup(self):
        self.encoder = Encoder(self.cfg)
        self.head = MLMHead(self.cfg)

    def __call__(self, tokens: jax.Array, mlm_positions: jax.Array, deterministic: bool = True,
                 attention_mask: Optional[jax.Array] = None):
        h, E = self.encoder(tokens, deterministic, attention_mask)
        hm = jnp.take_along_axis(h, mlm_positions[..., None], axis=1)         # (B, M, D)
        return self.head(hm, E)                                                # (B, M, V)


def mlm_loss(model: MLMModel, params, batch, rng=None):
    """Mean cross-entropy over the masked positions (weights 0 mark unused prediction slots).

    ``batch["attention_mask"]`` (optional, (B, L), 1 = real token) is passed to the model when
    the batch has padding. Returns (loss, aux) with aux = {"accuracy", "num_predictions"}."""
    deterministic = rng is None
    rngs = None if deterministic else {"dropout": rng}
    logits = model.apply({"params": params}, batch["tokens"], batch["mlm_positions"],
                         deterministic=deterministic, rngs=rngs,
                         attention_mask=batch.get("attention_mask"))
    logits = logits.astype(jnp.float32)
    w = batch["mlm_weights"].astype(jnp.float32)
    nll, correct = _cross_entropy(logits, batch["mlm_labels"])
    n = jnp.maximum(jnp.sum(w), 1.0)
    loss = jnp.sum(nll * w) / n
    acc = jnp.sum(correct * w) / n
    return loss, {"accuracy": acc, "num_predictions": jnp.sum(w)}


def _cross_entropy(logits: jax.Array, labels: jax.Array):
    """(nll, correct) with nll = logsumexp(z) - z_label, z = logits - max(logits) (max held
    constant: it cancels), correct = 1 where the label has the largest logit (a tie counts as
    correct; ties have probability 0 for float logits).

    Same value as ``-log_softmax(logits)[label]``, written so that reverse mode is elementwise:
    the label is picked by a one-hot compare (fused) instead of ``take_along_axis``, whose
    transpose is a scatter into a zero (B, M, V) tensor."""
    z = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    onehot = labels[..., None] == jnp.arange(logits.shape[-1], dtype=labels.dtype)
    z_label = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1)
    nll = jnp.log(jnp.sum(jnp.exp(z), axis=-1)) - z_label
    return nll, (z_label >= 0.0).astype(jnp.float32)


def init_params(cfg: ModelConfig, key: jax.Array, seq_len: int, init_scale: float = 1.0):
    """Initialise {"encoder", "head"}; every encoder parameter is multiplied by ``init_scale``."""
    model = MLMModel(cfg)
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    pos = jnp.zeros((1, 1), jnp.int32)
    params = model.init(key, tokens, pos)["params"]
    params = jax.tree.map(lambda x: x, dict(params))
    if init_scale != 1.0:
        params[ENCODER] = jax.tree.map(lambda x: x * jnp.asarray(init_scale, x.dtype), params[ENCODER])
    return params
