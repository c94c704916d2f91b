"""The model card (``README.md``) that ``scaleinv export`` writes into an export directory.

It states what the weights are (BERT baseline or SIBERT, sizes, parameter count), the training
recipe read from the run's ``config.json`` (encoder and head optimizer, learning rates, weight
decay, clipping, schedule, steps, batch), the held-out MLM loss of the exported step when the run
evaluated it (``RUN_DIR/eval.jsonl``, written by :func:`sibert.train.train` every ``eval_every``
steps on held-out articles; the unigram baseline from ``summary.json``), and how to load the
export in flax and in PyTorch. The complete training config is in ``sibert_export.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

__all__ = ["run_evaluation", "encoder_recipe", "model_card"]


def run_evaluation(run_dir, step: int) -> Optional[dict]:
    """{"step", "heldout_loss", "heldout_accuracy"[, "unigram_baseline"]} of ``step`` from
    ``RUN_DIR/eval.jsonl`` (None when the run did not evaluate that step)."""
    run_dir = Path(run_dir)
    row = None
    path = run_dir / "eval.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:   # a torn last line of a killed run
                continue
            if isinstance(r, dict) and r.get("step") == step and "heldout_loss" in r:
                row = {"step": step, "heldout_loss": float(r["heldout_loss"]),
                       "heldout_accuracy": r.get("heldout_accuracy")}
    if row is None:
        return None
    try:
        base = json.loads((run_dir / "summary.json").read_text()).get("unigram_baseline")
        if isinstance(base, (int, float)):
            row["unigram_baseline"] = float(base)
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    return row


def encoder_recipe(cfg) -> str:
    """The encoder optimizer of the TrainConfig ``cfg`` in words, with its hyper-parameters."""
    o = cfg.optimizer
    warm = f", linear LR warmup over {cfg.warmup_frac:g} of training" if cfg.warmup_frac else ""
    drops = f"LR / 10 at {cfg.lr_drops} of training"
    if o == "sgd-wd-rgc":
        return (f"SGD + weight decay + relative global clipping (`scaleinv.optim.sgd_wd_rgc`), no momentum: "
                f"lr {cfg.lr:g}, weight_decay {cfg.weight_decay:g}, C {cfg.clip_C:g}; {drops}{warm}")
    if o == "sgd-wd":
        return f"SGD + weight decay (`scaleinv.optim.sgd_wd`): lr {cfg.lr:g}, weight_decay {cfg.weight_decay:g}; {drops}{warm}"
    if o == "sgd":
        return f"plain SGD: lr {cfg.lr:g}, no weight decay; {drops}{warm}"
    if o == "rv-sgd-wd":
        return (f"rotational SGD + weight decay (`scaleinv.rotational`, Kosson et al. 2024): lr {cfg.lr:g}, "
                f"weight_decay {cfg.weight_decay:g}; {drops}{warm}")
    adam = f"b1 {cfg.adam_b1:g}, b2 {cfg.adam_b2:g}"
    if o == "rv-adamw":
        return (f"rotational AdamW (`scaleinv.rotational`, Kosson et al. 2024): lr {cfg.lr:g}, "
                f"weight_decay {cfg.weight_decay:g}, {adam}{warm}, then linear decay to 0")
    return (f"AdamW: lr {cfg.lr:g}, weight_decay {cfg.weight_decay:g} (matrices only), {adam}{warm}, "
            f"then linear decay to 0")


def _loading(si: bool, out: str) -> str:
    flax = f'''### flax (this project's `sibert` package)

```python
import numpy as np
from sibert.export import load_export
from sibert.model import MLMModel

model_config, params = load_export("{out}")      # exact parameters: names, shapes, dtypes, values
ids = np.array([[2, 100, 101, 3]]); mask = np.ones_like(ids)   # or the tokenizer below
positions = np.arange(ids.shape[1])[None]                      # the positions to predict
logits = MLMModel(model_config).apply({{"params": params}}, ids, positions, attention_mask=mask)
```
'''
    if si:
        torch = f'''### PyTorch (`pip install 'scaleinv[torch]'`)

```python
import torch
from scaleinv.torch.sibert import SIBERTForMaskedLM, load_tokenizer

model = SIBERTForMaskedLM.from_pretrained("{out}").eval()   # a torch.nn.Module (encoder + MLM head)
tok = load_tokenizer("{out}")                               # tokenizers.Tokenizer (training ids)
enc = tok.encode("the scale invariant encoder")            # adds [CLS] ... [SEP]
out = model(torch.tensor([enc.ids]), attention_mask=torch.tensor([enc.attention_mask]))
out.logits                                                  # (B, L, V); labels=... also gives out.loss
```

The logits equal the flax model's to float32 rounding (tested to 1e-5 absolute on padded
batches). This directory is **not** a `transformers` architecture: `AutoModel*` reject
`model_type = "sibert"`, and `BertForMaskedLM.from_pretrained` refuses it (there is no
`model.safetensors`; the weights are `sibert_model.safetensors` with the flax parameter names).
The tokenizer files are standard (`BertTokenizerFast.from_pretrained` loads them).
'''
    else:
        torch = f'''### PyTorch / Hugging Face transformers

```python
from transformers import BertForMaskedLM, BertTokenizerFast

model = BertForMaskedLM.from_pretrained("{out}").eval()     # logits equal ours to float32 rounding
tok = BertTokenizerFast.from_pretrained("{out}")            # ids equal the training ids
```

`token_type_embeddings` are zeros (the model was trained without segments).
'''
    return flax + "\n" + torch


def model_card(run, evaluation: Optional[dict], out_dir, n_params: int) -> str:
    """The README.md text of the export of ``run`` (a :class:`sibert.runs.Run`) into ``out_dir``."""
    cfg, m = run.config, run.model_config
    si = m.scale_invariant
    title = ("SIBERT (scale-invariant BERT, Li et al., ICML 2022)" if si
             else "BERT baseline (`BertForMaskedLM`)")
    arch = ("ReLU-normalised attention relu(s_ij) / sum_j relu(s_ij), PreNorm blocks with non-affine "
            "LayerNorm, ReLU, biases only on 1-homogeneous tensors, final non-affine LayerNorm, tied "
            "decoder normalised as s E / ||E||_F: the MLM loss is scale invariant in the encoder parameters"
            if si else
            "PostNorm, softmax attention, exact-erf GELU, affine LayerNorm eps 1e-12, tied decoder; "
            "parameter for parameter Hugging Face's `BertForMaskedLM` without the pooler")
    if evaluation:
        acc = evaluation.get("heldout_accuracy")
        loss = (f"**{evaluation['heldout_loss']:.4f}** nats per masked token at step {evaluation['step']}"
                + (f" (accuracy {acc:.4f})" if isinstance(acc, (int, float)) else "")
                + (f"; unigram baseline {evaluation['unigram_baseline']:.4f}" if "unigram_baseline" in evaluation else "")
                + f". Measured during training on {cfg.eval_batches} batches of {cfg.batch_size} x {cfg.seq_len} "
                  f"tokens from the held-out articles ({cfg.heldout_fraction:g} of the articles of `{cfg.source}`).")
    else:
        loss = (f"not available: the run did not evaluate step {run.step} (`eval.jsonl` of the run; "
                f"`eval_every` = {cfg.eval_every}).")
    recipe = "\n".join([
        "| | |", "|---|---|",
        f"| encoder optimizer (`{cfg.optimizer}`) | {encoder_recipe(cfg)} |",
        f"| head optimizer (`{cfg.head_optimizer}`) | lr {cfg.head_lr:g}, weight_decay {cfg.head_weight_decay:g} "
        f"(matrices only), linear warmup over {cfg.head_warmup_frac:g} of training, then linear decay to 0 |",
        f"| steps | exported step **{run.step}** of {cfg.steps} |",
        f"| batch | {cfg.batch_size} sequences x {cfg.seq_len} tokens, {cfg.mask_prob:g} of the tokens masked (80/10/10) |",
        f"| data | `{cfg.source}`, WordPiece vocabulary {cfg.vocab_size} |",
        f"| init | std {cfg.init_std:g}, encoder scaled by {cfg.init_scale:g}; seed {cfg.seed}; dropout {cfg.dropout:g} |",
    ])
    return f"""# {title}

Exported by `scaleinv export` from the run `{run.path}` (checkpoint step {run.step}).

## Model

{arch}.

vocab {m.vocab_size}, hidden {m.hidden}, {m.layers} layers, {m.heads} heads, FFN {m.ffn},
{m.max_positions} positions; {n_params:,} parameters.

## Training recipe

{recipe}

The full training config is `train_config` in `sibert_export.json`.

## Held-out loss

{loss}

## Loading

{_loading(si, str(out_dir))}
## Token format

Pretraining rows were windows of the document stream with `[SEP]` between documents and no
`[CLS]`; the exported tokenizer adds `[CLS] text [SEP]` as BERT does (`add_special_tokens=False`
gives the training format). `[CLS]`'s embedding is untrained after MLM pretraining: pool over
the real tokens for sentence tasks, or fine-tune it.
"""
