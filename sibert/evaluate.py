"""Held-out MLM evaluation of variable-length text from a run directory (padded, masked batches).

:func:`evaluate_texts` encodes each text as one padded row ``[CLS] text [SEP] [PAD]...``
(:func:`sibert.data.encode_examples`, the run's own ``tokenizer.json``), masks 15% of each row's
real tokens (:func:`sibert.data.mask_padded_rows`, seeded) and reports the mean masked-token
cross-entropy with the ``attention_mask`` in the model, so padding changes nothing.
:func:`heldout_texts` returns the run's held-out documents (the same article-level split as
training). Model and tokenizer come from the run directory only (:func:`sibert.runs.load_run`);
the text source is the one named in the run's config unless texts are given.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

__all__ = ["heldout_texts", "evaluate_texts"]


def heldout_texts(cfg) -> List[str]:
    """The held-out documents of ``cfg.source`` (split by sha1 of the id, as in training)."""
    from sibert.data import load_documents, split_documents

    _, held = split_documents(load_documents(cfg.source), cfg.heldout_fraction)
    return [t for _, t in held]


PROGRESS_MIN_BATCHES = 20   # from this many batches on the progress is shown on stderr


def evaluate_texts(run, texts: Sequence[str], batch_size: int = 32, seed: int = 0,
                   seq_len: int = None, progress: bool = True) -> Dict[str, float]:
    """Masked-token loss / accuracy of ``run`` (a :class:`sibert.runs.Run`) on ``texts``, one padded
    row per text (truncated to ``seq_len``, default the run's seq_len). With ``progress`` and at
    least :data:`PROGRESS_MIN_BATCHES` batches, the batches done are shown on stderr
    (:mod:`scaleinv.progress`), never on stdout."""
    import sys

    import jax

    from scaleinv.progress import Progress

    from sibert.data import encode_examples, mask_padded_rows
    from sibert.model import MLMModel, mlm_loss

    L = seq_len or run.config.seq_len
    tokens, amask = encode_examples(run.tokenizer, texts, L)
    batch = mask_padded_rows(tokens, amask, np.random.default_rng([seed, 13]), run.model_config.vocab_size,
                             run.config.mask_prob)
    model = MLMModel(run.model_config)
    step = jax.jit(lambda p, b: mlm_loss(model, p, b))
    tot_loss = tot_correct = tot_n = 0.0
    n_batches = -(-len(tokens) // batch_size)
    bar = Progress(n_batches, "evaluate", unit="batch", file=sys.stderr, every=max(1, -(-n_batches // 10))) \
        if progress and n_batches >= PROGRESS_MIN_BATCHES else None
    for i in range(0, len(tokens), batch_size):
        b = {k: v[i:i + batch_size] for k, v in batch.items()}
        n_rows = len(b["tokens"])
        if n_rows < batch_size:  # pad the last batch with all-padding rows of weight 0 (one compile)
            b = {k: np.concatenate([v, np.zeros((batch_size - n_rows,) + v.shape[1:], v.dtype)]) for k, v in b.items()}
        loss, aux = step(run.params, b)
        n = float(aux["num_predictions"])
        tot_loss += float(loss) * n
        tot_correct += float(aux["accuracy"]) * n
        tot_n += n
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return {"loss": tot_loss / max(tot_n, 1.0), "accuracy": tot_correct / max(tot_n, 1.0),
            "num_predictions": tot_n, "num_texts": len(tokens), "seq_len": L}
