"""Data pipeline: document split, tokenizer cache, packing, 80/10/10 masking, determinism."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sibert.data import (MASK_ID, NUM_SPECIAL, SEP_ID, SPECIAL_TOKENS, DataError, cache_entry, is_heldout,
                         load_documents, load_mlm_data, mask_rows, split_documents, train_tokenizer,
                         wiki_offline_file)

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


_TRAIN_ONE = """
import hashlib, sys
from sibert.data import load_documents, train_tokenizer
tok = train_tokenizer([t for _, t in load_documents(sys.argv[1])], 300)
print(hashlib.sha256(tok.to_str().encode()).hexdigest())
"""


def test_tokenizer_training_is_deterministic_across_processes():
    """The same corpus gives the same tokenizer (every token and id) in every process: the library's
    WordPieceTrainer does not (its ##-token ids follow hash-map order; 6 of 6 processes differed)."""
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for seed in ("0", "1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", _TRAIN_ONE, SAMPLE], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests


def test_tokenizer_vocabulary_is_wordpiece_shaped():
    """Special tokens at ids 0..4, every character a token, ``##c`` for every word-internal c, exactly
    vocab_size tokens, and every training word encoded without [UNK] and decoded back."""
    from tokenizers import normalizers, pre_tokenizers
    texts = [t for _, t in load_documents(SAMPLE)]
    tok = train_tokenizer(texts, 300)
    vocab = tok.get_vocab()
    assert [tok.id_to_token(i) for i in range(NUM_SPECIAL)] == list(SPECIAL_TOKENS)
    assert len(vocab) == 300 and sorted(vocab.values()) == list(range(300))
    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = [w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(t))]
    assert {c for w in words for c in w} <= set(vocab)
    assert {"##" + c for w in words for c in w[1:]} <= set(vocab)
    for tkn in vocab:                  # a learned token is a word start or a ## continuation, no mix
        assert tkn in SPECIAL_TOKENS or "##" not in tkn[1:] or tkn.startswith("##") and "##" not in tkn[2:]
    sample = sorted(set(words))[::7]
    encs = tok.encode_batch(sample, add_special_tokens=False)
    assert all(tok.token_to_id("[UNK]") not in e.ids for e in encs)
    assert [tok.decode(e.ids) for e in encs] == sample


def test_cache_entry_is_built_whole(tmp_path):
    """An incomplete entry (a crash of older code) is rebuilt; no temporary directory is left; the
    stored streams are the stored tokenizer's encoding of the split."""
    d = cache_entry(SAMPLE, 300, 0.25, str(tmp_path))
    d.mkdir(parents=True)
    (d / "train.npy").write_bytes(b"half")
    data = load_mlm_data(SAMPLE, vocab_size=300, seq_len=32, heldout_fraction=0.25, cache_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [d.name]
    assert sorted(p.name for p in d.iterdir()) == ["heldout.npy", "meta.json", "tokenizer.json", "train.npy"]
    from tokenizers import Tokenizer
    from sibert.data import encode_stream
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tr, he = split_documents(load_documents(SAMPLE), 0.25)
    np.testing.assert_array_equal(np.load(d / "train.npy"), encode_stream(tok, [t for _, t in tr]))
    np.testing.assert_array_equal(np.load(d / "heldout.npy"), encode_stream(tok, [t for _, t in he]))
    assert json.loads((d / "meta.json").read_text())["tokenizer_algo"] == "wordpiece-det1"
    assert data.train.shape[1] == 32
