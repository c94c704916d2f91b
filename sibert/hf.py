"""Hugging Face interop: our BERT baseline <-> ``transformers.BertForMaskedLM``, tokenizer files.

The BERT baseline of :mod:`sibert.model` is, parameter by parameter, Hugging Face's
``BertForMaskedLM`` (no pooler) with ``type_vocab_size = 2`` zero token-type rows (we have no
segments; E + 0 + P is exactly E + P, and a second segment is treated like the first):

=======================================================  ===============================================
ours (``params``, flax names)                             Hugging Face state dict (``W`` is (out, in))
=======================================================  ===============================================
encoder/word_embeddings (V, D)                            bert.embeddings.word_embeddings.weight
encoder/position_embeddings (P, D)                        bert.embeddings.position_embeddings.weight
--                                                        bert.embeddings.token_type_embeddings.weight = 0
encoder/embed_ln/{scale,bias}                             bert.embeddings.LayerNorm.{weight,bias}
encoder/layer_i/attention/{query,key,value}/kernel        ...layer.i.attention.self.{q,k,v}.weight
  (D, H, d_h) -> reshape (D, D), transpose                  (head h = output rows h d_h ... (h+1) d_h - 1)
encoder/layer_i/attention/out/kernel (H, d_h, D)          ...layer.i.attention.output.dense.weight
encoder/layer_i/ln_attn, ln_ffn                           ...attention.output.LayerNorm, ...output.LayerNorm
encoder/layer_i/ffn/fc1, fc2                              ...intermediate.dense, ...output.dense
head/transform, head/transform_ln                         cls.predictions.transform.dense, .LayerNorm
head/output_bias (V,)                                     cls.predictions.bias (decoder tied to the word table)
=======================================================  ===============================================

Both compute softmax(q k^T / sqrt(d_h) + (1 - m) finfo.min) with the same head split, exact-erf
GELU (``hidden_act``), LayerNorm eps 1e-12, PostNorm; logits agree to float32 rounding (tested
against ``BertForMaskedLM`` on padded batches, random and trained weights, to 1e-5).

SIBERT has no Hugging Face architecture (ReLU-normalised attention, PreNorm without affine, a
normalised tied decoder): its export keeps the flax names ("encoder/layer_0/attention/query/kernel")
and exact shapes (:func:`flatten_params`) in ``sibert_model.safetensors`` and is loaded with
:func:`sibert.export.load_export` (flax) or ``scaleinv.torch.sibert.SIBERTForMaskedLM`` (PyTorch).

Tokenizer: the run's WordPiece ``tokenizer.json`` with BERT's post-processor ``[CLS] $A [SEP]``
(and ``[CLS] $A [SEP] $B [SEP]`` with type ids 0 / 1), plus ``vocab.txt``,
``tokenizer_config.json`` and ``special_tokens_map.json``: ``BertTokenizerFast.from_pretrained``
gives the training ids for the text itself. Pretraining rows never contain ``[CLS]`` (see
:mod:`sibert.runs`), so ``[CLS]``'s embedding is untrained after MLM pretraining; pool over the
real tokens, or fine-tune ``[CLS]``, for sentence tasks.
"""
from __future__ import annotations

import json
from typing import Dict

import numpy as np

__all__ = ["hf_bert_config", "to_hf_bert", "from_hf_bert", "flatten_params", "unflatten_params",
           "hf_tokenizer_files"]

_LN = {"scale": "weight", "bias": "bias"}


def hf_bert_config(mcfg) -> dict:
    """``BertConfig`` fields (config.json) of the BERT baseline ``mcfg`` (a ModelConfig)."""
    if mcfg.scale_invariant:
        raise ValueError("hf_bert_config: SIBERT has no Hugging Face BERT equivalent")
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": mcfg.vocab_size, "hidden_size": mcfg.hidden, "num_hidden_layers": mcfg.layers,
        "num_attention_heads": mcfg.heads, "intermediate_size": mcfg.ffn,
        "max_position_embeddings": mcfg.max_positions, "type_vocab_size": 2,
        "hidden_act": mcfg.hidden_act, "layer_norm_eps": 1e-12, "initializer_range": mcfg.init_std,
        "hidden_dropout_prob": mcfg.dropout, "attention_probs_dropout_prob": mcfg.dropout,
        "pad_token_id": 0, "tie_word_embeddings": True, "position_embedding_type": "absolute",
        "dtype": "float32",
    }


def _np(x, dtype=np.float32) -> np.ndarray:
    """A C-contiguous NumPy copy of ``x`` with ``x``'s exact shape (0-d stays 0-d:
    ``np.ascontiguousarray`` would return shape (1,) for a scalar such as SIBERT's
    ``head/logit_scale``). ``dtype=None`` keeps the dtype."""
    return np.array(np.asarray(x), dtype=dtype, order="C", copy=True)


def to_hf_bert(params, mcfg) -> Dict[str, np.ndarray]:
    """Our BERT params -> Hugging Face ``BertForMaskedLM`` state dict (numpy float32)."""
    if mcfg.scale_invariant:
        raise ValueError("to_hf_bert: SIBERT has no Hugging Face BERT equivalent")
    D = mcfg.hidden
    enc, head = params["encoder"], params["head"]
    sd = {"bert.embeddings.word_embeddings.weight": enc["word_embeddings"],
          "bert.embeddings.position_embeddings.weight": enc["position_embeddings"],
          "bert.embeddings.token_type_embeddings.weight": np.zeros((2, D), np.float32)}
    for k, v in _LN.items():
        sd[f"bert.embeddings.LayerNorm.{v}"] = enc["embed_ln"][k]
    for i in range(mcfg.layers):
        lay, pre = enc[f"layer_{i}"], f"bert.encoder.layer.{i}."
        att = lay["attention"]
        for n in ("query", "key", "value"):
            sd[f"{pre}attention.self.{n}.weight"] = np.asarray(att[n]["kernel"]).reshape(D, D).T
            sd[f"{pre}attention.self.{n}.bias"] = np.asarray(att[n]["bias"]).reshape(D)
        sd[f"{pre}attention.output.dense.weight"] = np.asarray(att["out"]["kernel"]).reshape(D, D).T
        sd[f"{pre}attention.output.dense.bias"] = att["out"]["bias"]
        sd[f"{pre}intermediate.dense.weight"] = np.asarray(lay["ffn"]["fc1"]["kernel"]).T
        sd[f"{pre}intermediate.dense.bias"] = lay["ffn"]["fc1"]["bias"]
        sd[f"{pre}output.dense.weight"] = np.asarray(lay["ffn"]["fc2"]["kernel"]).T
        sd[f"{pre}output.dense.bias"] = lay["ffn"]["fc2"]["bias"]
        for k, v in _LN.items():
            sd[f"{pre}attention.output.LayerNorm.{v}"] = lay["ln_attn"][k]
            sd[f"{pre}output.LayerNorm.{v}"] = lay["ln_ffn"][k]
    sd["cls.predictions.transform.dense.weight"] = np.asarray(head["transform"]["kernel"]).T
    sd["cls.predictions.transform.dense.bias"] = head["transform"]["bias"]
    for k, v in _LN.items():
        sd[f"cls.predictions.transform.LayerNorm.{v}"] = head["transform_ln"][k]
    sd["cls.predictions.bias"] = head["output_bias"]
    return {k: _np(v) for k, v in sd.items()}


def from_hf_bert(sd: Dict[str, np.ndarray], mcfg):
    """Inverse of :func:`to_hf_bert` (a ``BertForMaskedLM`` state dict -> our BERT params).

    Raises ValueError for non-zero token-type embeddings (our model has no segments)."""
    D, H = mcfg.hidden, mcfg.heads
    g = lambda k: np.asarray(sd[k], np.float32)
    tt = sd.get("bert.embeddings.token_type_embeddings.weight")
    if tt is not None and np.any(np.asarray(tt) != 0):
        raise ValueError("from_hf_bert: non-zero token_type_embeddings cannot be represented (no segments)")
    ln = lambda pre: {k: g(f"{pre}.{v}") for k, v in _LN.items()}
    enc = {"word_embeddings": g("bert.embeddings.word_embeddings.weight"),
           "position_embeddings": g("bert.embeddings.position_embeddings.weight"),
           "embed_ln": ln("bert.embeddings.LayerNorm")}
    for i in range(mcfg.layers):
        pre = f"bert.encoder.layer.{i}."
        att = {n: {"kernel": g(f"{pre}attention.self.{n}.weight").T.reshape(D, H, D // H),
                   "bias": g(f"{pre}attention.self.{n}.bias").reshape(H, D // H)}
               for n in ("query", "key", "value")}
        att["out"] = {"kernel": g(f"{pre}attention.output.dense.weight").T.reshape(H, D // H, D),
                      "bias": g(f"{pre}attention.output.dense.bias")}
        enc[f"layer_{i}"] = {
            "attention": att,
            "ffn": {"fc1": {"kernel": g(f"{pre}intermediate.dense.weight").T, "bias": g(f"{pre}intermediate.dense.bias")},
                    "fc2": {"kernel": g(f"{pre}output.dense.weight").T, "bias": g(f"{pre}output.dense.bias")}},
            "ln_attn": ln(f"{pre}attention.output.LayerNorm"), "ln_ffn": ln(f"{pre}output.LayerNorm")}
    head = {"transform": {"kernel": g("cls.predictions.transform.dense.weight").T,
                          "bias": g("cls.predictions.transform.dense.bias")},
            "transform_ln": ln("cls.predictions.transform.LayerNorm"),
            "output_bias": g("cls.predictions.bias")}
    return {"encoder": enc, "head": head}


def flatten_params(params, sep: str = "/") -> Dict[str, np.ndarray]:
    """{"encoder": {"layer_0": {...}}} -> {"encoder/layer_0/...": array} (flax names kept;
    every leaf keeps its exact shape, 0-d included, and dtype: :func:`unflatten_params` inverts it)."""
    out = {}

    def rec(prefix, node):
        if isinstance(node, dict) or hasattr(node, "items"):
            for k, v in node.items():
                rec(f"{prefix}{sep}{k}" if prefix else str(k), v)
        else:
            out[prefix] = _np(node, dtype=None)

    rec("", params)
    return out


def unflatten_params(flat: Dict[str, np.ndarray], sep: str = "/"):
    """Inverse of :func:`flatten_params` (nested dicts of NumPy arrays, shapes and dtypes kept)."""
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(v)
    return out


def hf_tokenizer_files(tokenizer_json: str, model_max_length: int) -> Dict[str, str]:
    """File name -> text of a Hugging Face BERT tokenizer directory built from our tokenizer.json.

    ``tokenizer.json`` gets BERT's template post-processor (specials are only added when asked:
    training used ``add_special_tokens=False``, see :mod:`sibert.data`)."""
    from tokenizers import Tokenizer, processors

    from sibert.data import CLS_ID, SEP_ID, SPECIAL_TOKENS

    tok = Tokenizer.from_str(tokenizer_json)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)])
    tok.no_padding()
    tok.no_truncation()
    vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise ValueError("tokenizer vocabulary ids are not 0..n-1")
    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    specials = {"unk_token": unk, "sep_token": sep, "pad_token": pad, "cls_token": cls, "mask_token": mask}
    cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "tokenize_chinese_chars": True,
           "strip_accents": None, "clean_up_tokenization_spaces": False,
           "model_max_length": int(model_max_length), "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
           **specials}
    return {"tokenizer.json": tok.to_str(pretty=True),
            "vocab.txt": "".join(t + "\n" for t, _ in vocab),
            "tokenizer_config.json": json.dumps(cfg, indent=1),
            "special_tokens_map.json": json.dumps(specials, indent=1)}
