"""The peer of item 3: HuggingFace ``transformers`` ``BertForMaskedLM`` (PyTorch, CPU) of the
identical shape (layers, hidden, heads, intermediate size, vocabulary, sequence length, batch,
masked positions) trained with ``torch.optim.AdamW``; dropout 0 like our presets.

One step = forward + cross-entropy + backward + AdamW step (+ zero_grad). Two head variants:

* ``masked`` (like for like with our model, which applies the MLM head to the masked positions
  only): ``model.bert(...)`` -> gather the M masked positions -> ``model.cls`` -> CE;
* ``full``: the stock ``model(input_ids, labels=...)`` call, head over all L positions
  (labels -100 elsewhere), as most HF training scripts run it.

Optional: needs the ``[bench]`` extra (torch CPU wheel + transformers); :func:`available`
says whether it is installed.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable, Dict

import numpy as np

__all__ = ["available", "versions", "best_threads", "make_hf_step"]


def available() -> bool:
    """True when torch and transformers import (a broken or hidden install counts as missing)."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
        return False
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def versions() -> Dict[str, Any]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads()}


def best_threads(cfg, batch, trials: int = 3) -> Dict[str, Any]:
    """Pick torch's intra-op thread count for the peer: 1 or os.cpu_count(), whichever runs the
    masked-head step faster (min of ``trials`` after one warm-up). On a shared machine an OpenMP
    team of N threads stalls whenever one of its threads is preempted (measured here: 2 threads
    ~50x slower than 1 while another process kept a core busy), so the fair peer is the better
    of the two. Sets the chosen count and returns {threads, seconds_by_threads}."""
    import os
    import time

    import torch

    out = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        step, _ = make_hf_step(cfg, batch, "masked")
        step()
        ts = []
        for _ in range(trials):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        out[n] = min(ts)
    best = min(out, key=out.get)
    torch.set_num_threads(best)
    return {"threads": best, "seconds_by_threads": out}


def make_hf_step(cfg, batch: Dict[str, np.ndarray], head: str = "masked", seed: int = 0
                 ) -> tuple[Callable[[], Any], Dict[str, Any]]:
    """Zero-argument callable doing one HF training step on ``batch`` (numpy, from
    :func:`benchmarks.sibert_step.synthetic_batch`); info {n_params, attn_implementation}."""
    if head not in ("masked", "full"):
        raise ValueError(f"head: unknown value {head!r}; allowed: masked, full")
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    hf_cfg = BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.ffn,
                        max_position_embeddings=cfg.max_positions, type_vocab_size=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(hf_cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(cfg.adam_b1, cfg.adam_b2), weight_decay=0.01)
    tokens = torch.from_numpy(np.asarray(batch["tokens"], np.int64))
    pos = torch.from_numpy(np.asarray(batch["mlm_positions"], np.int64))
    labels = torch.from_numpy(np.asarray(batch["mlm_labels"], np.int64))
    weights = torch.from_numpy(np.asarray(batch["mlm_weights"], np.float32))
    full_labels = torch.full_like(tokens, -100)
    full_labels.scatter_(1, pos, torch.where(weights > 0, labels, torch.full_like(labels, -100)))
    D = cfg.hidden

    def loss_masked():
        h = model.bert(input_ids=tokens).last_hidden_state                      # (B, L, D)
        hm = torch.gather(h, 1, pos[..., None].expand(-1, -1, D))              # (B, M, D)
        logits = model.cls(hm)                                                  # (B, M, V)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                reduction="none")
        w = weights.reshape(-1)
        return (nll * w).sum() / w.sum().clamp_min(1.0)

    def loss_full():
        return model(input_ids=tokens, labels=full_labels).loss

    loss_fn = loss_masked if head == "masked" else loss_full

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.detach())

    n_params = sum(p.numel() for p in model.parameters())
    info = {"n_params": n_params, "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "head": head, "torch_threads": torch.get_num_threads()}
    return step, info
