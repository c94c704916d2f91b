"""Downstream check: fine-tune a pretrained BERT / SIBERT encoder on a tiny sentence task.

Task (:func:`article_task`): which of ``n`` articles of the corpus a sentence comes from. The
``n`` documents with the most sentences (>= ``min_words`` words each) are taken, every class is
cut to the same count (so the majority baseline is 1/n), the sentences are shuffled (seeded) and
split train / test. Sentences have different lengths, so every batch is padded and carries an
``attention_mask`` (:func:`sibert.data.encode_examples`).

Model (:class:`Classifier`): the run's encoder, then the MEAN of the encoder outputs over the
real tokens of a row (padding excluded: sum_j m_j h_j / sum_j m_j) and a dense layer to the
class logits. Mean pooling rather than BERT's [CLS] pooler because pretraining rows never
contain [CLS] (see :mod:`sibert.runs`): its embedding is untrained. Parameter groups
``{"encoder", "head"}`` as in pretraining; the optimizer is the run's own recipe
(:func:`sibert.train.make_optimizer`: SIBERT encoder SGD + WD + relative global clipping, BERT
encoder AdamW) with the HEAD trained by LAMB, as in the paper's fine-tuning; warmup + linear
decay over the fine-tuning steps. ``encoder_optimizer="adam"`` / ``"lamb"`` replaces the
encoder's pretraining recipe by the paper's fine-tuning one (BERT: Adam, SIBERT: LAMB, WD on
matrices only; :mod:`sibert.downstream` uses it), both with ``warmup_frac`` linear warmup then
linear decay.

This is a proof that padding, masking and a head path work end to end, not a benchmark of
quality at this size.

    python -m sibert.finetune RUN_DIR [--steps 300]     # prints a JSON line with the accuracies
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["SentenceTask", "split_sentences", "article_task", "Classifier", "ENCODER_OPTIMIZERS", "finetune"]


@dataclass(frozen=True)
class SentenceTask:
    names: Tuple[str, ...]
    train_texts: Tuple[str, ...]
    train_labels: np.ndarray
    test_texts: Tuple[str, ...]
    test_labels: np.ndarray


def split_sentences(text: str, min_words: int = 5) -> List[str]:
    """Sentences of ``text`` (split after . ! ? followed by white space), >= min_words words."""
    parts = re.split(r"(?<=[.!?])\s+", text.replace("\n", " "))
    return [p.strip() for p in parts if len(p.split()) >= min_words]


def article_task(docs: Sequence[Tuple[str, str]], n: int = 2, test_fraction: float = 0.25,
                 seed: int = 0, min_words: int = 5, max_per_class: Optional[int] = None) -> SentenceTask:
    """Which of the ``n`` sentence-richest documents a sentence comes from (balanced classes)."""
    sents = sorted(((split_sentences(t, min_words), i) for i, t in docs), key=lambda x: (-len(x[0]), x[1]))[:n]
    if len(sents) < 2:
        raise ValueError(f"article_task: need >= 2 documents, got {len(sents)}")
    k = min(len(s) for s, _ in sents)
    if max_per_class:
        k = min(k, max_per_class)
    rng = np.random.default_rng([seed, 17])
    texts, labels = [], []
    for c, (s, _) in enumerate(sents):
        pick = rng.permutation(len(s))[:k]
        texts += [s[j] for j in pick]
        labels += [c] * k
    order = rng.permutation(len(texts))
    texts, labels = [texts[j] for j in order], np.asarray(labels, np.int32)[order]
    n_test = max(n, int(round(test_fraction * len(texts))))
    return SentenceTask(names=tuple(name for _, name in sents), train_texts=tuple(texts[n_test:]),
                        train_labels=labels[n_test:], test_texts=tuple(texts[:n_test]), test_labels=labels[:n_test])


def _classifier_module():
    import flax.linen as nn
    import jax.numpy as jnp

    from sibert.model import Encoder, ModelConfig

    class Classifier(nn.Module):
        """encoder -> masked mean over real tokens -> dense -> class logits."""
        cfg: ModelConfig
        num_labels: int

        def setup(self):
            self.encoder = Encoder(self.cfg)
            self.head = nn.Dense(self.num_labels, kernel_init=nn.initializers.truncated_normal(self.cfg.init_std),
                                 name="head")

        def __call__(self, tokens, attention_mask, deterministic: bool = True):
            h, _ = self.encoder(tokens, deterministic, attention_mask)
            m = attention_mask.astype(h.dtype)[..., None]
            pooled = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
            return self.head(pooled)

    return Classifier


def Classifier(cfg, num_labels: int):
    """The flax classifier module (built lazily so importing this file does not import flax)."""
    return _classifier_module()(cfg, num_labels)


ENCODER_OPTIMIZERS = ("adam", "lamb")   # fine-tuning recipes that replace the pretraining one


def finetune(run, task: SentenceTask, steps: int = 300, batch_size: int = 16, lr: Optional[float] = None,
             head_lr: float = 1e-2, seq_len: Optional[int] = None, seed: int = 0,
             encoder_optimizer: Optional[str] = None, encoder_weight_decay: float = 0.0,
             warmup_frac: float = 0.1, eval_train: bool = True) -> Dict[str, float]:
    """Fine-tune ``run`` (a :class:`sibert.runs.Run`) on ``task``; returns accuracies and losses.

    ``lr``: encoder LR (default: the run's pretraining LR / 10); ``head_lr``: LAMB LR of the head.
    ``encoder_optimizer``: None = the run's own pretraining recipe (:func:`sibert.train.make_optimizer`),
    or ``"adam"`` / ``"lamb"`` (weight decay ``encoder_weight_decay`` on matrices; encoder and head
    LR: ``warmup_frac`` linear warmup, then linear decay to 0). ``eval_train=False`` skips the
    train-set accuracy and the accuracy before fine-tuning (both None then)."""
    import jax
    import jax.numpy as jnp
    import optax

    from sibert.config import apply_overrides, validate
    from sibert.data import encode_examples
    from sibert.train import encoder_head_transform, make_head_optimizer, make_optimizer, warmup_linear_schedule

    L = seq_len or run.config.seq_len
    n_labels = int(max(task.train_labels.max(), task.test_labels.max())) + 1
    if encoder_optimizer is not None and encoder_optimizer not in ENCODER_OPTIMIZERS:
        raise ValueError(f"encoder_optimizer: unknown value {encoder_optimizer!r}; allowed: "
                         f"{', '.join(ENCODER_OPTIMIZERS)} (or None: the run's pretraining recipe)")
    over = {"steps": steps, "lr": lr or run.config.lr / 10, "head_lr": head_lr, "head_optimizer": "lamb"}
    if encoder_optimizer is not None:
        over["head_warmup_frac"] = warmup_frac
    cfg = validate(apply_overrides(run.config, over))
    model = Classifier(run.model_config, n_labels)
    xtr, mtr = encode_examples(run.tokenizer, task.train_texts, L)
    xte, mte = encode_examples(run.tokenizer, task.test_texts, L)
    head = model.init(jax.random.PRNGKey(seed), xtr[:1], mtr[:1])["params"]["head"]
    params = {"encoder": jax.tree.map(jnp.asarray, run.params["encoder"]), "head": head}
    if encoder_optimizer is None:
        tx, _, _ = make_optimizer(cfg)
    else:
        enc_lr = warmup_linear_schedule(cfg.lr, steps, warmup_frac)
        matrices = lambda tree: jax.tree.map(lambda x: x.ndim >= 2, tree)
        enc = (optax.adamw(enc_lr, cfg.adam_b1, cfg.adam_b2, weight_decay=encoder_weight_decay, mask=matrices)
               if encoder_optimizer == "adam" else
               optax.lamb(enc_lr, cfg.adam_b1, cfg.adam_b2, weight_decay=encoder_weight_decay, mask=matrices))
        tx = encoder_head_transform(enc, make_head_optimizer(cfg)[0])
    opt_state = tx.init(params)

    def loss_fn(p, x, m, y, w):
        logits = model.apply({"params": p}, x, m)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0), logits

    @jax.jit
    def step(p, s, x, m, y):
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, m, y, jnp.ones(y.shape, jnp.float32))
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    predict = jax.jit(lambda p, x, m: jnp.argmax(model.apply({"params": p}, x, m), -1))

    def accuracy(p, x, m, y):
        correct = 0
        for i in range(0, len(x), batch_size):
            xb, mb = x[i:i + batch_size], m[i:i + batch_size]
            k = len(xb)
            if k < batch_size:  # all-padding rows (ignored) keep one compiled shape
                xb = np.concatenate([xb, np.zeros((batch_size - k, L), xb.dtype)])
                mb = np.concatenate([mb, np.zeros((batch_size - k, L), mb.dtype)])
            correct += int(np.sum(np.asarray(predict(p, xb, mb))[:k] == y[i:i + k]))
        return correct / len(x)

    rng = np.random.default_rng([seed, 19])
    N, losses, perm, at = len(xtr), [], np.empty(0, int), 0
    acc0 = accuracy(params, xte, mte, task.test_labels) if eval_train else None
    for t in range(steps):
        if at + batch_size > len(perm):
            perm, at = rng.permutation(N), 0
        idx = perm[at:at + batch_size] if batch_size <= N else rng.integers(0, N, batch_size)
        at += batch_size
        params, opt_state, loss = step(params, opt_state, xtr[idx], mtr[idx], task.train_labels[idx])
        losses.append(float(loss))
    return {"model": run.config.model, "classes": list(task.names), "train_examples": N,
            "test_examples": len(xte), "steps": steps, "batch_size": batch_size, "encoder_lr": cfg.lr,
            "head_lr": head_lr, "head_optimizer": "lamb", "encoder_optimizer": encoder_optimizer or cfg.optimizer,
            "test_accuracy_before": acc0,
            "train_accuracy": accuracy(params, xtr, mtr, task.train_labels) if eval_train else None,
            "test_accuracy": accuracy(params, xte, mte, task.test_labels),
            "majority_baseline": float(np.max(np.bincount(task.test_labels)) / len(task.test_labels)),
            "first_loss": losses[0] if losses else None, "final_loss": float(np.mean(losses[-10:])) if losses else None,
            "padding_fraction_train": float(1 - mtr.mean())}


def main(argv=None) -> int:
    import argparse
    import json

    from sibert.data import load_documents
    from sibert.runs import load_run

    ap = argparse.ArgumentParser(prog="python -m sibert.finetune", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--max-per-class", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--head-lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    run = load_run(a.run_dir)
    task = article_task(load_documents(run.config.source), n=a.classes, seed=a.seed, max_per_class=a.max_per_class)
    out = finetune(run, task, steps=a.steps, batch_size=a.batch_size, lr=a.lr, head_lr=a.head_lr,
                   seq_len=a.seq_len, seed=a.seed)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
