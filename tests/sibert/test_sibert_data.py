"""Data pipeline: document split, tokenizer cache, packing, 80/10/10 masking, determinism."""
from pathlib import Path

import numpy as np
import pytest

from sibert.data import (MASK_ID, NUM_SPECIAL, SEP_ID, DataError, is_heldout, load_documents,
                         load_mlm_data, mask_rows, split_documents, wiki_offline_file)

SAMPLE = str(Path(__file__).parent / "data" / "sample")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_mlm_data(SAMPLE, vocab_size=300, seq_len=32, heldout_fraction=0.25,
                         cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_split_by_document_is_deterministic_and_disjoint():
    docs = load_documents(SAMPLE)
    tr, he = split_documents(docs, 0.25)
    assert {d for d, _ in tr}.isdisjoint({d for d, _ in he}) and len(tr) + len(he) == len(docs)
    assert split_documents(list(reversed(docs)), 0.25)[1] == list(reversed(he))  # order-free
    frac = np.mean([is_heldout(f"doc{i}", 0.05) for i in range(4000)])
    assert abs(frac - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 4000)


def test_wiki_offline_file_is_real_text():
    docs = load_documents("wiki-offline")
    assert len(docs) > 9000 and sum(len(t) for _, t in docs) > 4_000_000
    assert wiki_offline_file().name == "summaries_en-us.json"


def test_packing_cache_and_batches(data, tmp_path):
    assert data.train.shape[1] == 32 and data.heldout.shape[1] == 32 and len(data.heldout) >= 4
    assert data.tokenizer_vocab <= 300 and data.train.max() < 300 and (data.train == SEP_ID).any()
    b1, b2 = data.train_batch(5, 8, seed=3), data.train_batch(5, 8, seed=3)
    for k in b1:
        np.testing.assert_array_equal(b1[k], b2[k])
    assert not np.array_equal(data.train_batch(6, 8, 3)["tokens"], b1["tokens"])
    # labels are the original tokens at the masked positions; M = round(0.15 * 32) = 5
    assert b1["mlm_positions"].shape == (8, 5)
    # one epoch of batches (B = 1) visits every training row exactly once
    N = len(data.train)
    rows = {tuple(r) for r in data.train.tolist()}
    seen = []
    for s in range(N):
        b = data.train_batch(s, 1, seed=0)
        r = b["tokens"][0].copy()
        r[b["mlm_positions"][0]] = b["mlm_labels"][0]                # undo the masking
        seen.append(tuple(r.tolist()))
    assert set(seen) == rows and len(set(seen)) == len(rows)


def test_masking_80_10_10():
    rng = np.random.default_rng(0)
    rows = rng.integers(NUM_SPECIAL, 1000, (4000, 40))
    rows[:, 0] = SEP_ID
    b = mask_rows(rows, rng, 1000, 0.15)
    assert b["mlm_positions"].shape == (4000, 6) and b["mlm_weights"].min() == 1.0
    assert not (b["mlm_positions"] == 0).any()                        # specials never picked
    np.testing.assert_array_equal(np.take_along_axis(rows, b["mlm_positions"], 1), b["mlm_labels"])
    new = np.take_along_axis(b["tokens"], b["mlm_positions"], 1)
    n = new.size
    f_mask = np.mean(new == MASK_ID)
    f_same = np.mean(new == b["mlm_labels"])      # 10% kept + random that hits the label (1e-4)
    tol = 4 * np.sqrt(0.25 / n)
    assert abs(f_mask - 0.8) < tol and abs(f_same - 0.1) < tol and abs(1 - f_mask - f_same - 0.1) < tol
    untouched = np.ones_like(rows, bool)
    np.put_along_axis(untouched, b["mlm_positions"], False, 1)
    np.testing.assert_array_equal(b["tokens"][untouched], rows[untouched])


def test_unigram_baseline_formula(data):
    ub = data.unigram_baseline()
    he = np.bincount(data.heldout.ravel(), minlength=300)[NUM_SPECIAL:]
    p = he[he > 0] / he.sum()
    assert ub["heldout_entropy"] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    assert ub["train_unigram_xent"] >= ub["heldout_entropy"] - 1e-9  # Gibbs' inequality


def test_bad_source(tmp_path):
    with pytest.raises(DataError, match="source"):
        load_documents(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no non-empty"):
        load_documents(str(tmp_path))
