"""Downstream sentence classification (padded batches, LAMB head): a few steps run end to end and
the classifier's logits do not depend on padding. Accuracy at a useful size is measured with
``python -m sibert.finetune RUN_DIR`` (README), not here."""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import SAMPLE  # noqa: E402

from sibert.config import TrainConfig, apply_overrides
from sibert.data import encode_examples, load_documents, train_tokenizer
from sibert.finetune import Classifier, article_task, finetune, split_sentences
from sibert.model import ModelConfig, init_params
from sibert.runs import Run


def test_split_sentences_and_balanced_task():
    assert split_sentences("One two three four five. Six seven. Eight nine ten eleven twelve!") == [
        "One two three four five.", "Eight nine ten eleven twelve!"]
    task = article_task(load_documents(SAMPLE), n=2, test_fraction=0.25, seed=0)
    labels = np.concatenate([task.train_labels, task.test_labels])
    assert np.bincount(labels).tolist() == [len(labels) // 2] * 2
    assert not set(task.train_texts) & set(task.test_texts)


@pytest.mark.parametrize("model", ["bert", "sibert"])
def test_finetune_runs_and_classifier_ignores_padding(model):
    docs = load_documents(SAMPLE)
    tok = train_tokenizer([t for _, t in docs], 300)
    cfg = apply_overrides(TrainConfig(), dict(model=model, source=str(SAMPLE), vocab_size=300, hidden=32, layers=1, heads=2, ffn=64,
                                              max_positions=48, seq_len=32,
                                              **({"optimizer": "adamw", "lr": 1e-3} if model == "bert" else {})))
    mcfg = ModelConfig.from_train(cfg)
    run = Run(path=Path("."), config=cfg, model_config=mcfg, params=init_params(mcfg, jax.random.PRNGKey(0), 32),
              step=0, tokenizer=tok)
    task = article_task(docs, n=2, seed=0)
    out = finetune(run, task, steps=3, batch_size=8, seq_len=32)
    assert out["head_optimizer"] == "lamb" and out["padding_fraction_train"] > 0.0
    assert np.isfinite(out["first_loss"]) and np.isfinite(out["final_loss"])
    assert 0.0 <= out["test_accuracy"] <= 1.0 and out["majority_baseline"] == 0.5
    # classifier logits: same with 32 or 48 positions of padding and with other ids at the pads
    clf = Classifier(mcfg, 2)
    x, m = encode_examples(tok, sorted(task.train_texts + task.test_texts, key=len)[:4], 32)
    assert m.min() == 0   # padded rows
    x2, m2 = np.pad(x, ((0, 0), (0, 16))), np.pad(m, ((0, 0), (0, 16)))   # 16 more [PAD] positions
    p = clf.init(jax.random.PRNGKey(1), x, m)["params"]
    p = {"encoder": run.params["encoder"], "head": p["head"]}
    f = lambda x, m: np.asarray(clf.apply({"params": p}, jnp.asarray(x), jnp.asarray(m)))
    ref = f(x, m)
    np.testing.assert_allclose(f(x2, m2), ref, atol=1e-5)
    noisy = np.where(m == 1, x, np.random.default_rng(0).integers(5, 300, x.shape))
    np.testing.assert_allclose(f(noisy, m), ref, atol=1e-6)
    assert np.max(np.abs(f(noisy, np.ones_like(m)) - ref)) > 1e-4   # without the mask it would change
