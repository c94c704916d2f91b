"""SIBERT (scale-invariant BERT, Li et al. ICML 2022) as a ``torch.nn.Module``, loading ``scaleinv export``.

A line-by-line twin of the SIBERT branch of the flax model ``sibert/model.py`` (its docstring's
BERT-vs-SIBERT table), with the same parameter names and shapes, so that an export directory
(``config.json`` + ``sibert_model.safetensors`` + tokenizer files) loads without conversion::

    from scaleinv.torch.sibert import SIBERTForMaskedLM, load_tokenizer
    model = SIBERTForMaskedLM.from_pretrained("exported/si").eval()
    tok = load_tokenizer("exported/si")                      # tokenizers.Tokenizer, the training ids
    out = model(input_ids, attention_mask=mask)              # out.logits (B, L, V)
    out = model(input_ids, attention_mask=mask, labels=y)    # out.loss: mean CE where y != -100

What it computes (h the residual stream, LN(x) = (x - mean) / sqrt(var + ln_eps) without affine,
ln_eps = attn_eps = 1e-30 as in the flax model):

* embedding: h_0 = (E[tok] + P[pos]) W_in (no bias; 2-homogeneous in the encoder);
* each of ``layers`` PreNorm layers: h <- h + Attn(LN(h)), h <- h + FFN(LN(h)), with
  q, k, v = LN(h) W + b (per head), s = q k^T (no 1/sqrt(d_h)),
  p_ij = m_j relu(s_ij) / max(sum_j m_j relu(s_ij), attn_eps) (m the key mask: a padded key gets
  exactly zero weight; an all-masked or all-non-positive row attends to nothing), output
  (p v) W_o without bias; FFN = relu(x W_1 + b_1) W_2 without bias;
* encoder output z = LN(h_L): 0-homogeneous, so the loss is scale invariant in ``encoder.*``;
* MLM head: y = LN_affine(relu(z W_t + b_t)) (eps 1e-12), logits = y (s / ||E||_F) E^T + b with
  the tied word table E and the head scalar s = ``head.logit_scale``.

Parameter names are the flax names with ``.`` for ``/`` (``encoder.layer_0.attention.query.kernel``
of shape (D, H, d_h); kernels are (in, out) as in flax, not ``nn.Linear``'s (out, in)).
:meth:`SIBERTForMaskedLM.flax_state_dict` gives them back under the flax names, for
``sibert.hf.unflatten_params`` and the flax ``MLMModel``.

Logits equal the flax model's to float32 rounding: tested to 1e-5 absolute on padded held-out
batches of a trained run (``tests/sibert/test_sibert_export.py``) and on random weights
(``tests/torch/test_torch_sibert.py``, which also checks the scale invariance of the encoder with
:mod:`scaleinv.torch.testing`). The BERT baseline needs no class here: its export is a
``transformers.BertForMaskedLM`` checkpoint.

Bad input (a missing directory or file, a BERT or foreign export, a truncated weights file, weights
that do not match the config) raises :class:`SIBERTExportError` with a one-line message.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["SIBERTConfig", "SIBERTExportError", "MaskedLMOutput", "SIBERTEncoder", "SIBERTHead",
           "SIBERTForMaskedLM", "load_tokenizer", "si_attention_probs", "WEIGHTS", "MODEL_TYPE"]

WEIGHTS = "sibert_model.safetensors"   # sibert.export.SIBERT_WEIGHTS (the library may not import the wing)
MODEL_TYPE = "sibert"
EXPORT_INFO = "sibert_export.json"


class SIBERTExportError(ValueError):
    """A directory that is not a loadable SIBERT export; the message (one line) names the file."""


@dataclasses.dataclass(frozen=True)
class SIBERTConfig:
    """The SIBERT fields of ``sibert.model.ModelConfig`` (``config.json``'s ``sibert_model_config``)."""

    vocab_size: int = 8192
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    ffn: int = 512
    max_positions: int = 128
    init_std: float = 0.02
    dropout: float = 0.0
    attn_eps: float = 1e-30
    ln_eps: float = 1e-30

    @classmethod
    def from_dict(cls, d: dict) -> "SIBERTConfig":
        """From a ``ModelConfig`` dict; refuses ``scale_invariant = False`` (the BERT baseline)."""
        if not d.get("scale_invariant", True):
            raise SIBERTExportError("sibert_model_config: scale_invariant is false (the BERT baseline: load it "
                                    "with transformers.BertForMaskedLM)")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted({"vocab_size", "hidden", "layers", "heads", "ffn", "max_positions"} - set(d))
        if missing:
            raise SIBERTExportError(f"sibert_model_config: missing {', '.join(missing)}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.hidden % cfg.heads:
            raise SIBERTExportError(f"sibert_model_config: hidden {cfg.hidden} is not a multiple of heads {cfg.heads}")
        return cfg


class MaskedLMOutput(NamedTuple):
    """``loss`` (None without labels) and ``logits`` (B, L, V) or (B, M, V) at ``mlm_positions``."""

    loss: Optional[torch.Tensor]
    logits: torch.Tensor


def _trunc_normal(shape: Sequence[int], std: float) -> nn.Parameter:
    """flax ``truncated_normal(std)``: N(0, std^2) truncated to +-2 std."""
    t = torch.empty(tuple(shape))
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)
    return nn.Parameter(t)


def _layer_norm(x: torch.Tensor, eps: float, scale: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """flax ``nn.LayerNorm(use_fast_variance=False)``: (x - mean) * (rsqrt(var + eps) * scale) + bias."""
    mean = x.mean(-1, keepdim=True)
    y = x - mean
    mul = torch.rsqrt(y.square().mean(-1, keepdim=True) + eps)
    if scale is not None:
        mul = mul * scale
    y = y * mul
    return y if bias is None else y + bias


def si_attention_probs(scores: torch.Tensor, eps: float, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """p_ij = m_j relu(s_ij) / max(sum_j m_j relu(s_ij), eps) (``sibert.model.si_attention_probs``)."""
    a = torch.relu(scores)
    if key_mask is not None:   # a select, not a product (as in flax): finite gradients for all-masked rows
        a = torch.where(key_mask > 0, a, torch.zeros_like(a))
    return a / torch.clamp_min(a.sum(-1, keepdim=True), eps)


class _Dense(nn.Module):
    """flax ``Dense`` / ``DenseGeneral``: x contracted over its last ``len(in_shape)`` axes with
    ``kernel`` (in_shape + out_shape), plus ``bias`` (out_shape) if any."""

    def __init__(self, in_shape: Tuple[int, ...], out_shape: Tuple[int, ...], bias: bool, std: Optional[float]):
        super().__init__()
        self.n_in = len(in_shape)
        fan_in = math.prod(in_shape)
        # std None: variance_scaling(1, fan_in, truncated_normal) (flax's embed_proj init)
        s = std if std is not None else math.sqrt(1.0 / fan_in) / 0.87962566103423978
        self.kernel = _trunc_normal(in_shape + out_shape, s)
        self.bias = nn.Parameter(torch.zeros(out_shape)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tensordot(x, self.kernel, dims=self.n_in)
        return y if self.bias is None else y + self.bias


class _SelfAttention(nn.Module):
    def __init__(self, cfg: SIBERTConfig):
        super().__init__()
        D, H = cfg.hidden, cfg.heads
        self.cfg = cfg
        for name in ("query", "key", "value"):
            setattr(self, name, _Dense((D,), (H, D // H), True, cfg.init_std))
        self.out = _Dense((H, D // H), (D,), False, cfg.init_std)   # no bias: ctx W_o is 2-homogeneous
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)                 # (B, L, H, dh)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k)                       # (B, H, L, L)
        probs = self.dropout(si_attention_probs(scores, self.cfg.attn_eps, key_mask))
        return self.out(torch.einsum("bhqk,bkhd->bqhd", probs, v))


class _FeedForward(nn.Module):
    def __init__(self, cfg: SIBERTConfig):
        super().__init__()
        self.fc1 = _Dense((cfg.hidden,), (cfg.ffn,), True, cfg.init_std)
        self.fc2 = _Dense((cfg.ffn,), (cfg.hidden,), False, cfg.init_std)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(torch.relu(self.fc1(x))))


class _EncoderLayer(nn.Module):
    """PreNorm: h + Attn(LN(h)), then h + FFN(LN(h)); LN without affine."""

    def __init__(self, cfg: SIBERTConfig):
        super().__init__()
        self.eps = cfg.ln_eps
        self.attention = _SelfAttention(cfg)
        self.ffn = _FeedForward(cfg)

    def forward(self, h: torch.Tensor, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        h = h + self.attention(_layer_norm(h, self.eps), key_mask)
        return h + self.ffn(_layer_norm(h, self.eps))


class SIBERTEncoder(nn.Module):
    """input_ids (B, L) [, attention_mask (B, L), 1 = real token] -> z (B, L, D), the final
    non-affine LayerNorm of the residual stream (0-homogeneous in all encoder parameters)."""

    def __init__(self, cfg: SIBERTConfig):
        super().__init__()
        self.cfg = cfg
        self.word_embeddings = _trunc_normal((cfg.vocab_size, cfg.hidden), cfg.init_std)
        self.position_embeddings = _trunc_normal((cfg.max_positions, cfg.hidden), cfg.init_std)
        self.embed_proj = _Dense((cfg.hidden,), (cfg.hidden,), False, None)
        self.dropout = nn.Dropout(cfg.dropout)
        for i in range(cfg.layers):
            self.add_module(f"layer_{i}", _EncoderLayer(cfg))

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        L = input_ids.shape[1]
        if L > self.cfg.max_positions:
            raise ValueError(f"input_ids: length {L} > max_positions {self.cfg.max_positions}")
        x = self.word_embeddings[input_ids] + self.position_embeddings[None, :L]
        h = self.dropout(self.embed_proj(x))
        key_mask = None if attention_mask is None else attention_mask[:, None, None, :]
        for i in range(self.cfg.layers):
            h = getattr(self, f"layer_{i}")(h, key_mask)
        return _layer_norm(h, self.cfg.ln_eps)


class _AffineLN(nn.Module):
    """The parameters of the head's affine LayerNorm (flax names ``scale``, ``bias``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class SIBERTHead(nn.Module):
    """z (.., D), word table E (V, D) -> logits y (s / ||E||_F) E^T + b (not scale invariant)."""

    def __init__(self, cfg: SIBERTConfig):
        super().__init__()
        self.transform = _Dense((cfg.hidden,), (cfg.hidden,), True, cfg.init_std)
        self.transform_ln = _AffineLN(cfg.hidden)
        self.output_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_std * math.sqrt(cfg.vocab_size * cfg.hidden)))

    def forward(self, z: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.transform(z))
        y = _layer_norm(y, 1e-12, self.transform_ln.scale, self.transform_ln.bias)
        y = y * (self.logit_scale / torch.sqrt(torch.sum(torch.square(E))))
        return y @ E.T + self.output_bias


class SIBERTForMaskedLM(nn.Module):
    """Encoder + MLM head (``encoder.*``, ``head.*``: the two optimizer groups of the recipe)."""

    def __init__(self, config: SIBERTConfig):
        super().__init__()
        self.config = config
        self.encoder = SIBERTEncoder(config)
        self.head = SIBERTHead(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                mlm_positions: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None) -> MaskedLMOutput:
        """Logits at every position, or at ``mlm_positions`` (B, M); with ``labels`` (shaped like
        the logits' first two axes, -100 = ignored) also the mean cross-entropy ``loss``.
        Outputs at padded positions are not meaningful."""
        z = self.encoder(input_ids, attention_mask)
        if mlm_positions is not None:
            z = torch.take_along_dim(z, mlm_positions[..., None].long(), dim=1)
        logits = self.head(z, self.encoder.word_embeddings)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                               labels.reshape(-1).long(), ignore_index=-100)
        return MaskedLMOutput(loss, logits)

    # ------------------------------------------------------------------ export directory I/O
    def flax_state_dict(self) -> Dict[str, np.ndarray]:
        """{flax name ("encoder/layer_0/attention/query/kernel"): NumPy array}, exactly the export's tensors."""
        return {k.replace(".", "/"): v.detach().cpu().numpy().copy() for k, v in self.state_dict().items()}

    @classmethod
    def from_pretrained(cls, export_dir, dtype: torch.dtype = torch.float32) -> "SIBERTForMaskedLM":
        """Load ``scaleinv export``'s SIBERT directory (``config.json``, ``sibert_model.safetensors``).

        Every tensor must be there with the config's shape (no random initialisation of anything
        missing); :class:`SIBERTExportError` otherwise. The model is in eval mode."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(export_dir)
        if not d.is_dir():
            raise SIBERTExportError(f"EXPORT_DIR: {str(d)!r} is not a directory")
        config = _read_config(d)
        mt = config.get("model_type")
        if mt != MODEL_TYPE:
            hint = (" (the BERT baseline: load it with transformers.BertForMaskedLM.from_pretrained)"
                    if mt == "bert" else "")
            raise SIBERTExportError(f"EXPORT_DIR: {d / 'config.json'} has model_type {mt!r}, not a SIBERT "
                                    f"export of `scaleinv export`{hint}")
        if not isinstance(config.get("sibert_model_config"), dict):
            raise SIBERTExportError(f"EXPORT_DIR: {d / 'config.json'} has no sibert_model_config")
        cfg = SIBERTConfig.from_dict(config["sibert_model_config"])
        path = d / str(config.get("weights", WEIGHTS))
        if not path.is_file():
            raise SIBERTExportError(f"EXPORT_DIR: {str(d)!r} has no {path.name} (an incomplete export, or one "
                                    f"written by an older scaleinv: export the run again)")
        try:
            flat = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise SIBERTExportError(f"EXPORT_DIR: {path} cannot be read ({type(e).__name__}: {first}); "
                                    f"truncated or not a safetensors file") from None
        model = cls(cfg)
        want = {k.replace(".", "/"): tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in flat.items()}
        problems = [f"missing {k}" for k in sorted(set(want) - set(got))]
        problems += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
        problems += [f"{k} {got[k]} != {want[k]}" for k in sorted(set(want) & set(got)) if got[k] != want[k]]
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            raise SIBERTExportError(f"EXPORT_DIR: {path} does not match its config ({cfg.layers} layers, hidden "
                                    f"{cfg.hidden}, vocab {cfg.vocab_size}): {'; '.join(problems[:3])}{more}")
        model.load_state_dict({k.replace("/", "."): v for k, v in flat.items()}, strict=True)
        return model.to(dtype).eval()


def _read_config(d: Path) -> dict:
    p = d / "config.json"
    if not p.is_file():
        raise SIBERTExportError(f"EXPORT_DIR: {str(d)!r} has no config.json (not an export of `scaleinv export`)")
    try:
        config = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SIBERTExportError(f"EXPORT_DIR: {p} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise SIBERTExportError(f"EXPORT_DIR: {p} is not a JSON object")
    return config


def load_tokenizer(export_dir):
    """The export's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` (``encode(text)`` adds
    ``[CLS] ... [SEP]``; ``add_special_tokens=False`` gives the pretraining format).
    ``transformers.BertTokenizerFast.from_pretrained(export_dir)`` loads the same files."""
    from tokenizers import Tokenizer

    p = Path(export_dir) / "tokenizer.json"
    if not p.is_file():
        raise SIBERTExportError(f"EXPORT_DIR: {str(Path(export_dir))!r} has no tokenizer.json")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a plain Exception for a bad file
        raise SIBERTExportError(f"EXPORT_DIR: {p} cannot be read ({type(e).__name__})") from None
