"""torch twins of :mod:`scaleinv.audit.examples` (the paper's Table-2 blocks) and torch factories
for ``scaleinv audit``.

Blocks, with their claimed "(input degree; output degree)": input (0;1) :class:`InputEmbedding` ·
adding a bias (1;1) :class:`AddBias` · LayerNorm without affine (x;0) / with affine (x;1)
:func:`layer_norm` · linear (x;x+1) :class:`Linear` · embedding (x;x+1) :class:`Embedding` ·
2-layer ReLU feed-forward (0;2) :class:`FeedForward` · SI attention (x,x,x;x+2)
:class:`SIAttention` · PreNorm encoder layer (2;2) :class:`EncoderLayer`. Parameters are drawn
N(0, 0.5^2) like the flax examples (a generic point: no zero biases).

Factories (``(model, batch, options)``)::

    scaleinv audit scaleinv.torch.examples:hf_bert --max-depth 5     # HF BertForMaskedLM, tiny config
    scaleinv audit scaleinv.torch.examples:si_encoder                # a scale-invariant torch encoder
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["InputEmbedding", "AddBias", "layer_norm", "Linear", "Embedding", "FeedForward", "SIAttention",
           "EncoderLayer", "SIEncoder", "hf_bert", "si_encoder", "TINY_EPS"]

TINY_EPS = 1e-30   # LayerNorm / attention epsilon small enough not to break homogeneity in float32
STD = 0.5


def _normal_(module: nn.Module, seed: int = 7) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(STD * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


class InputEmbedding(nn.Module):
    """tokens (B, L) int -> E[tok] + P[pos]: data in (degree 0), 1-homogeneous out: (0;1)."""

    def __init__(self, vocab: int, max_len: int, dim: int):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.empty(max_len, dim))
        _normal_(self)

    def forward(self, tokens):
        return self.word(tokens) + self.position[: tokens.shape[-1]]


class AddBias(nn.Module):
    """h + b: homogeneous only if h has the bias's degree 1: (1;1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(dim))
        _normal_(self)

    def forward(self, h):
        return h + self.bias


def layer_norm(dim: int, affine: bool) -> nn.LayerNorm:
    """``nn.LayerNorm`` with a tiny epsilon: (x;0) without affine, (x;1) with weight and bias."""
    ln = nn.LayerNorm(dim, eps=TINY_EPS, elementwise_affine=affine, bias=affine)
    return _normal_(ln) if affine else ln


class Linear(nn.Linear):
    """``nn.Linear`` without bias: (x;x+1)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        _normal_(self)


class Embedding(nn.Module):
    """A (soft) one-hot input times the table: h E, (x;x+1) (a float input, unlike tokens)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.empty(vocab, dim))
        _normal_(self)

    def forward(self, onehot):
        return onehot @ self.table


class FeedForward(nn.Module):
    """act(h W1 + b1) W2: with ReLU the bias needs h W1 of degree 1, so h of degree 0: (0;2)."""

    def __init__(self, dim: int, hidden: int, out: int, activation: str = "relu"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.act = {"relu": nn.ReLU(), "gelu": nn.GELU(), "softplus": nn.Softplus()}[activation]
        self.fc2 = nn.Linear(hidden, out, bias=False)
        _normal_(self)

    def forward(self, h):
        return self.fc2(self.act(self.fc1(h)))


class SIAttention(nn.Module):
    """sum_i N(relu(Q W^Q_i (K W^K_i)^T)) V W^V_i W^O_i, N row normalisation: (x,x,x;x+2);
    ``softmax=True``: BERT's softmax attention (not homogeneous); ``out_bias=True``: a bias after
    W^O (on an (x+2)-homogeneous tensor: broken)."""

    def __init__(self, dim: int, heads: int = 2, softmax: bool = False, out_bias: bool = False):
        super().__init__()
        self.heads, self.softmax = heads, softmax
        self.query, self.key, self.value = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.out = nn.Linear(dim, dim, bias=out_bias)
        _normal_(self)

    def forward(self, q_in, k_in, v_in):
        B, L, D = q_in.shape
        dh = D // self.heads
        split = lambda t: t.reshape(B, -1, self.heads, dh).transpose(1, 2)  # noqa: E731  (B, H, L, dh)
        q, k, v = split(self.query(q_in)), split(self.key(k_in)), split(self.value(v_in))
        s = q @ k.transpose(-1, -2)
        if self.softmax:
            p = torch.softmax(s / math.sqrt(dh), dim=-1)
        else:
            a = torch.relu(s)
            p = a / torch.clamp(a.sum(dim=-1, keepdim=True), min=TINY_EPS)
        ctx = (p @ v).transpose(1, 2).reshape(B, L, D)
        return self.out(ctx)


class EncoderLayer(nn.Module):
    """PreNorm: h + A(LN h, LN h, LN h), then h + F(LN h); LN non-affine: (2;2)."""

    def __init__(self, dim: int, ffn: int, heads: int = 2, softmax: bool = False):
        super().__init__()
        self.ln_attn, self.ln_ffn = layer_norm(dim, False), layer_norm(dim, False)
        self.attention = SIAttention(dim, heads, softmax=softmax)
        self.ffn = FeedForward(dim, ffn, dim)

    def forward(self, h):
        x = self.ln_attn(h)
        h = h + self.attention(x, x, x)
        return h + self.ffn(self.ln_ffn(h))


class SIEncoder(nn.Module):
    """The SIBERT recipe on a torch encoder: tokens -> E[tok] + P[pos] (1-homogeneous) -> bias-free
    projection (2-homogeneous) -> PreNorm SI layers (2;2) -> non-affine LN (0) -> linear head.
    The loss is scale invariant in the ``encoder`` parameters."""

    def __init__(self, vocab: int = 31, max_len: int = 16, dim: int = 16, ffn: int = 32, layers: int = 2,
                 classes: int = 3, heads: int = 2):
        super().__init__()
        self.encoder = nn.ModuleDict({"embed": InputEmbedding(vocab, max_len, dim), "proj": Linear(dim, dim),
                                      "layers": nn.ModuleList(EncoderLayer(dim, ffn, heads) for _ in range(layers)),
                                      "final_ln": layer_norm(dim, False)})
        self.head = nn.Linear(dim, classes)
        _normal_(self.head)

    def forward(self, tokens, labels=None):
        h = self.encoder["proj"](self.encoder["embed"](tokens))
        for layer in self.encoder["layers"]:
            h = layer(h)
        logits = self.head(self.encoder["final_ln"](h).mean(dim=1))
        return logits if labels is None else nn.functional.cross_entropy(logits, labels)


def si_encoder(layers: int = 2, dim: int = 16, seed: int = 0):
    """``scaleinv audit`` factory: :class:`SIEncoder` (float32), target: loss 0-homogeneous in "encoder"."""
    torch.manual_seed(seed)
    model = SIEncoder(dim=dim, ffn=2 * dim, layers=layers)
    gen = torch.Generator().manual_seed(seed)
    batch = {"tokens": torch.randint(0, 31, (2, 8), generator=gen), "labels": torch.randint(0, 3, (2,), generator=gen)}
    options = {"target_group": "encoder", "target_degree": 0, "expect": {r"encoder\.layers\.\d+": "(2;2)"},
               "loss_fn": lambda out: out}
    return model, batch, options


def hf_bert(layers: int = 2, hidden: int = 16, heads: int = 2, ffn: int = 32, vocab: int = 31, seq_len: int = 8,
            batch_size: int = 2, seed: int = 0):
    """``scaleinv audit`` factory: HF ``BertForMaskedLM`` with a tiny config (needs transformers),
    the same sizes as ``sibert.audit_factories:bert``; target: loss 0-homogeneous in "bert"
    (embeddings + encoder; the decoder is tied to the word embeddings, as in our BERT)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=seq_len, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, attn_implementation="eager")
    model = BertForMaskedLM(cfg)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen)
    labels = torch.full_like(ids, -100)
    pos = torch.randint(0, seq_len, (batch_size, max(1, seq_len // 6)), generator=gen)
    labels.scatter_(1, pos, torch.randint(0, vocab, pos.shape, generator=gen))
    options = {"target_group": "bert", "target_degree": 0, "expect": {r"bert\.encoder\.layer\.\d+": "(2;2)"}}
    return model, {"input_ids": ids, "labels": labels}, options
