"""Prepared token shards: tokenise a corpus once, train from it lazily, each process its own rows.

``scaleinv prepare-data SOURCE OUT`` (:func:`prepare`) reads SOURCE (``wiki-offline`` or a
directory of ``*.txt`` files, exactly as :func:`sibert.data.load_documents`), splits it by document
and trains the tokenizer as :mod:`sibert.data` does (same :func:`~sibert.data.is_heldout` split,
same deterministic :func:`~sibert.data.train_tokenizer`), then encodes each split with the
tokenizer's ``encode_batch`` (the Rust library's thread pool: every core), a chunk of documents at
a time under a progress bar (:mod:`scaleinv.progress`), into OUT::

    OUT/index.json           format, version, the key (source, fingerprint, vocab_size,
                             heldout_fraction, tokenizer algorithm), per split its shards and tokens
    OUT/tokenizer.json       the WordPiece tokenizer
    OUT/train-00000.npy ...  the split's token stream ([SEP] after each document, as
    OUT/heldout-00000.npy    :func:`sibert.data.encode_stream`) cut into shards of ``shard_tokens``
                             int32 tokens (the last one shorter); plain ``.npy`` files
    OUT/train.counts.npy     token-id counts of each split's whole stream (the unigram baseline
    OUT/heldout.counts.npy   without reading the corpus at training time)

OUT is built whole in a private sibling directory and renamed into place: a refused or killed
run leaves nothing. Rows are not fixed at preparation: with ``seq_len`` L, row r of a split is
``stream[r L : (r + 1) L]`` (the tail shorter than L dropped), the packing of
:func:`sibert.data.pack`, so one prepared directory serves every ``seq_len``.

Training (``data_dir`` in :class:`sibert.config.TrainConfig`, :func:`load_shard_data`) opens the
index and reads only the rows a batch needs, with ``os.pread`` on the shard files (no file is
mapped or loaded whole: the process's memory does not grow with the corpus; the page cache,
which the kernel may drop, holds what was read). :class:`ShardData` is a
:class:`sibert.data.MLMData` whose ``train`` / ``heldout`` are :class:`ShardRows` (lazy row views):
``train_batch(step, B, seed)`` is the same pure function of (step, seed) (the same permutation per
epoch, the same masking draws), so the shipped corpus gives the same batches through either path
and resume stays bit-identical. ``train_batch(step, B, seed, process_index, process_count)``
returns only rows ``[p B/n, (p+1) B/n)`` of the global batch, the slice
:func:`sibert.train.shard_batch` would have given that process, and reads only those rows; the
masking draws are the whole batch's (O(B L) random numbers per step, no corpus data).

Why ``.npy`` + ``pread`` and not array_record / grain or ``np.load(mmap_mode='r')``: measured in
``benchmarks/data_pipeline.py`` (the ``data`` item of ``scaleinv bench``; results under
``benchmarks/results/``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from sibert.data import (NUM_SPECIAL, SEP_ID, TOKENIZER_ALGO, DataError, MLMData, _vocab_too_small,
                         is_heldout, mask_rows, min_vocab_size, source_fingerprint, train_tokenizer)

__all__ = ["FORMAT", "VERSION", "DEFAULT_SHARD_TOKENS", "SPLITS", "prepare", "prepare_key", "read_index",
           "ShardRows", "ShardData", "load_shard_data", "strict_documents", "stream_of"]

FORMAT = "scaleinv-token-shards"
VERSION = 1
DEFAULT_SHARD_TOKENS = 1 << 22      # 4,194,304 int32 tokens = 16 MiB per shard
SPLITS = ("train", "heldout")
ENCODE_CHUNK = 256                  # documents per encode_batch call (one progress update each)
INT32_MAX = 2 ** 31 - 1


# ----------------------------------------------------------------------------- reading the source
def strict_documents(source: str) -> List[Tuple[str, str]]:
    """[(doc_id, text)] of ``source`` as :func:`sibert.data.load_documents` gives them (same ids,
    order and texts), refusing what that function would silently accept: a SOURCE that is a
    file, a directory without ``*.txt`` files, and binary files (NUL bytes or not UTF-8).
    :class:`~sibert.data.DataError` names SOURCE and the allowed values."""
    if source == "wiki-offline":
        from sibert.data import load_documents
        return load_documents(source)
    root = Path(source)
    if not root.exists():
        raise DataError(f"SOURCE: {source!r} does not exist; allowed: 'wiki-offline' or a directory of *.txt files")
    if not root.is_dir():
        raise DataError(f"SOURCE: {source!r} is a file, not a directory; allowed: 'wiki-offline' or a directory "
                        f"of *.txt files")
    files = sorted(root.rglob("*.txt"))
    if not files:
        raise DataError(f"SOURCE: {source!r} holds no *.txt files; allowed: 'wiki-offline' or a directory of "
                        f"*.txt files")
    docs = []
    for p in files:
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise DataError(f"SOURCE: cannot read {str(p)!r} ({e.strerror or e}); allowed: readable text files") \
                from None
        if b"\x00" in raw:
            raise DataError(f"SOURCE: {str(p)!r} is binary (NUL bytes); allowed: UTF-8 text files")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"SOURCE: {str(p)!r} is not UTF-8 text (byte {e.start}); allowed: UTF-8 text files") \
                from None
        text = text.strip()
        if text:
            docs.append((str(p.relative_to(root)), text))
    if not docs:
        raise DataError(f"SOURCE: {source!r} holds no non-empty documents; allowed: a directory with at least "
                        f"one non-empty *.txt file")
    return docs


def _source_id(source: str) -> str:
    return source if source == "wiki-offline" else str(Path(source).resolve())


def prepare_key(source: str, vocab_size: int, heldout_fraction: float) -> Dict[str, object]:
    """What fixes the tokenizer and the token streams (recorded in ``index.json``)."""
    return {"source": _source_id(source), "fingerprint": source_fingerprint(source), "vocab_size": int(vocab_size),
            "heldout_fraction": float(heldout_fraction), "tokenizer_algo": TOKENIZER_ALGO}


# ----------------------------------------------------------------------------- writing
class _ShardWriter:
    """Cuts one split's token stream into .npy shards of exactly ``shard_tokens`` tokens."""

    def __init__(self, out: Path, split: str, shard_tokens: int, vocab: int):
        self.out, self.split, self.size = out, split, shard_tokens
        self.buf: List[np.ndarray] = []
        self.nbuf = 0
        self.files: List[Dict[str, object]] = []
        self.counts = np.zeros(vocab, np.int64)
        self.tokens = 0

    def add(self, ids: np.ndarray) -> None:
        self.counts += np.bincount(ids, minlength=len(self.counts))[: len(self.counts)]
        self.tokens += len(ids)
        self.buf.append(ids)
        self.nbuf += len(ids)
        while self.nbuf >= self.size:
            flat = np.concatenate(self.buf)
            self._write(flat[: self.size])
            rest = flat[self.size:]
            self.buf, self.nbuf = ([rest] if len(rest) else []), len(rest)

    def _write(self, arr: np.ndarray) -> None:
        name = f"{self.split}-{len(self.files):05d}.npy"
        np.save(self.out / name, np.ascontiguousarray(arr, np.int32))
        self.files.append({"file": name, "tokens": int(len(arr))})

    def close(self) -> Dict[str, object]:
        if self.nbuf:
            self._write(np.concatenate(self.buf))
        self.buf, self.nbuf = [], 0
        counts = f"{self.split}.counts.npy"
        np.save(self.out / counts, self.counts)
        return {"tokens": int(self.tokens), "shards": self.files, "counts": counts}


def _check_out(out: Path, key: Dict[str, object]) -> Optional[Dict[str, object]]:
    """None if OUT may be created (absent or an empty directory); the existing index if OUT already
    holds this very preparation; DataError otherwise (another tokenizer's shards, other files)."""
    from scaleinv.usage import UsageError, probe_creatable

    if out.exists() and not out.is_dir():
        raise DataError(f"OUT: {str(out)!r} exists and is not a directory; allowed: a new or empty directory")
    if out.is_dir():
        idx = out / "index.json"
        if idx.is_file():
            try:
                old = json.loads(idx.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("format") == FORMAT and old.get("key") == key:
                return old
            diff = sorted(k for k in key if (old.get("key") or {}).get(k) != key[k])
            raise DataError(f"OUT: {str(out)!r} holds token shards of another tokenizer / corpus (differs in "
                            f"{', '.join(diff) or 'format'}); allowed: a new or empty directory, or the same "
                            f"SOURCE, --vocab-size and --heldout-fraction")
        if any(out.iterdir()):
            raise DataError(f"OUT: {str(out)!r} is not empty and holds no token shards; allowed: a new or empty "
                            f"directory")
    try:
        probe_creatable(out, "OUT", out)
    except UsageError as e:
        raise DataError(str(e)) from None
    return None


def _check_args(vocab_size, heldout_fraction, shard_tokens) -> None:
    from sibert.config import MIN_VOCAB

    for name, v, lo in (("--shard-tokens", shard_tokens, 1), ("--vocab-size", vocab_size, MIN_VOCAB)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= INT32_MAX:
            raise DataError(f"{name}: must be an integer in {lo}..{INT32_MAX}, got {v!r}")
    if isinstance(heldout_fraction, bool) or not isinstance(heldout_fraction, (int, float)) \
            or not 0 < heldout_fraction < 1:
        raise DataError(f"--heldout-fraction: must be a number in (0, 1), got {heldout_fraction!r}")


def prepare(source: str, out, vocab_size: int, heldout_fraction: float = 0.05,
            shard_tokens: int = DEFAULT_SHARD_TOKENS, log: Optional[Callable[[str], None]] = None,
            progress: bool = True) -> Dict[str, object]:
    """Tokenise ``source`` into token shards under ``out`` (module docstring); returns the index
    (with ``"seconds"``: wall time of the tokenizer training and of the encode pass). Bad input
    raises :class:`~sibert.data.DataError` before anything is written. An ``out`` that already
    holds this preparation (same key) is left as it is and its index returned."""
    from scaleinv.progress import Progress

    log = log or (lambda s: None)
    _check_args(vocab_size, heldout_fraction, shard_tokens)
    heldout_fraction = float(heldout_fraction)
    out = Path(out).expanduser().absolute()
    docs = strict_documents(source)
    key = prepare_key(source, vocab_size, heldout_fraction)
    existing = _check_out(out, key)
    if existing is not None:
        log(f"{out} already holds these shards ({existing['splits']['train']['tokens']} train tokens): nothing to do")
        return existing
    split = {s: [] for s in SPLITS}
    for d in docs:
        split["heldout" if is_heldout(d[0], heldout_fraction) else "train"].append(d)
    if not split["train"] or not split["heldout"]:
        raise DataError(f"--heldout-fraction: {heldout_fraction} leaves an empty split ({len(split['train'])} "
                        f"train / {len(split['heldout'])} held-out documents); allowed: a fraction that leaves "
                        f"documents on both sides")
    train_texts = [t for _, t in split["train"]]
    need = min_vocab_size(train_texts)
    if vocab_size < need:
        e = _vocab_too_small(vocab_size, need, source)
        raise DataError(f"--vocab-size: {str(e).removeprefix('vocab_size: ')}")
    import time
    t0 = time.perf_counter()
    log(f"training the tokenizer on {len(train_texts)} documents (vocab {vocab_size})")
    tok = train_tokenizer(train_texts, vocab_size)
    t_tok = time.perf_counter() - t0
    del train_texts
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        tok.save(str(tmp / "tokenizer.json"))
        vocab = tok.get_vocab_size()
        splits = {}
        t1 = time.perf_counter()
        bar = Progress(len(docs), "prepare-data: tokenise", unit="doc", enabled=progress)
        try:
            for s in SPLITS:
                w = _ShardWriter(tmp, s, int(shard_tokens), vocab)
                texts = [t for _, t in split[s]]
                for c in range(0, len(texts), ENCODE_CHUNK):
                    chunk = texts[c:c + ENCODE_CHUNK]
                    for enc in tok.encode_batch(chunk, add_special_tokens=False):
                        w.add(np.asarray(enc.ids + [SEP_ID], np.int32))
                    bar.update(len(chunk))
                splits[s] = {**w.close(), "documents": len(texts)}
        finally:
            bar.close()
        t_enc = time.perf_counter() - t1
        index = {"format": FORMAT, "version": VERSION, "key": key, "tokenizer": "tokenizer.json",
                 "tokenizer_vocab": vocab, "shard_tokens": int(shard_tokens),
                 "tokenizer_sha1": hashlib.sha1((tmp / "tokenizer.json").read_bytes()).hexdigest(),
                 "splits": splits}
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
        if out.is_dir():
            out.rmdir()                    # an empty directory (checked above)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out}: {splits['train']['tokens']} train + {splits['heldout']['tokens']} held-out tokens in "
        f"{len(splits['train']['shards']) + len(splits['heldout']['shards'])} shards")
    return {**index, "seconds": {"tokenizer": t_tok, "encode": t_enc}}


# ----------------------------------------------------------------------------- reading
def read_index(data_dir) -> Dict[str, object]:
    """The index of a prepared directory (DataError naming ``data_dir`` if there is none)."""
    p = Path(data_dir) / "index.json"
    try:
        index = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"data_dir: {str(data_dir)!r} holds no index.json; allowed: a directory written by "
                        f"'scaleinv prepare-data'") from None
    except (OSError, ValueError) as e:
        raise DataError(f"data_dir: cannot read {str(p)!r} ({e}); allowed: a directory written by "
                        f"'scaleinv prepare-data'") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"data_dir: {str(p)!r} is not a {FORMAT} v{VERSION} index; allowed: a directory written by "
                        f"'scaleinv prepare-data'")
    return index


class _Files:
    """Open shard files (at most ``keep`` at a time, least recently used closed first)."""

    def __init__(self, keep: int = 64):
        self.keep, self.open = keep, OrderedDict()

    def get(self, path: Path) -> Tuple[int, int]:
        """(fd, byte offset of the data) of a .npy shard."""
        if path in self.open:
            self.open.move_to_end(path)
            return self.open[path]
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            if dtype != np.dtype(np.int32) or len(shape) != 1:
                raise DataError(f"data_dir: {str(path)!r} is not a 1-D int32 token shard")
            offset = f.tell()
        fd = os.open(path, os.O_RDONLY)
        self.open[path] = (fd, offset)
        while len(self.open) > self.keep:
            os.close(self.open.popitem(last=False)[1][0])
        return fd, offset

    def close(self):
        while self.open:
            os.close(self.open.popitem()[1][0])

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class ShardRows:
    """Rows of ``seq_len`` tokens of one split's sharded stream, read on demand.

    ``len(rows)`` = tokens // seq_len; ``rows[idx]`` (an int or an int array) reads those rows
    (``rows.reads`` counts the rows read, for tests and benchmarks); ``shape`` / ``ndim`` as an array's.
    """

    ndim = 2

    def __init__(self, root: Path, split: Dict[str, object], seq_len: int, files: Optional[_Files] = None):
        self.root, self.seq_len = Path(root), int(seq_len)
        self.paths = [self.root / s["file"] for s in split["shards"]]
        self.starts = np.concatenate([[0], np.cumsum([s["tokens"] for s in split["shards"]])]).astype(np.int64)
        self.tokens = int(self.starts[-1])
        self.n = self.tokens // self.seq_len
        self.files = files or _Files()
        self.reads = 0

    @property
    def shape(self):
        return (self.n, self.seq_len)

    def __len__(self):
        return self.n

    def read_tokens(self, start: int, stop: int) -> np.ndarray:
        """stream[start:stop] (crossing shard boundaries as needed)."""
        out = np.empty(stop - start, np.int32)
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            end = min(stop, int(self.starts[k + 1]))
            fd, off = self.files.get(self.paths[k])
            nbytes = (end - pos) * 4
            buf = os.pread(fd, nbytes, off + (pos - int(self.starts[k])) * 4)
            if len(buf) != nbytes:
                raise DataError(f"data_dir: {str(self.paths[k])!r} is shorter than its index says")
            out[pos - start:end - start] = np.frombuffer(buf, np.int32)
            pos, k = end, k + 1
        return out

    def __getitem__(self, idx) -> np.ndarray:
        scalar = np.ndim(idx) == 0
        idx = np.atleast_1d(np.asarray(idx, np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"row index out of range 0..{self.n - 1}")
        L = self.seq_len
        out = np.empty((len(idx), L), np.int32)
        for j, r in enumerate(idx):
            out[j] = self.read_tokens(int(r) * L, int(r) * L + L)
        self.reads += len(idx)
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None):      # the whole split (small corpora, tests)
        a = self.read_tokens(0, self.n * self.seq_len).reshape(self.n, self.seq_len)
        return a if dtype is None else a.astype(dtype)


def _share(batch_size: int, process_index: int, process_count: int) -> Tuple[int, int]:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} / process_count {process_count}")
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
    per = batch_size // process_count
    return process_index * per, per


class ShardData(MLMData):
    """:class:`sibert.data.MLMData` over prepared shards (module docstring): the same batches, read
    lazily, each process only its share."""

    reads_process_share = True        # train_batch / heldout_batch take (process_index, process_count)

    def __init__(self, data_dir, seq_len: int, vocab_size: int, mask_prob: float = 0.15):
        self.root = Path(data_dir)
        self.index = read_index(self.root)
        files = _Files()
        rows = {s: ShardRows(self.root, self.index["splits"][s], seq_len, files) for s in SPLITS}
        super().__init__(train=rows["train"], heldout=rows["heldout"], vocab_size=vocab_size,
                         tokenizer_vocab=int(self.index["tokenizer_vocab"]), mask_prob=mask_prob,
                         tokenizer_path=str(self.root / self.index["tokenizer"]))
        self._perms: "OrderedDict[Tuple[int, int], np.ndarray]" = OrderedDict()

    def _perm(self, seed: int, epoch: int) -> np.ndarray:
        """perm_e of :meth:`MLMData.train_batch` (cached: two epochs)."""
        k = (seed, epoch)
        if k not in self._perms:
            self._perms[k] = np.random.default_rng([seed, 7, epoch]).permutation(len(self.train))
            while len(self._perms) > 2:
                self._perms.popitem(last=False)
        return self._perms[k]

    def train_rows(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Row ids of the global batch of ``step`` (the map of :meth:`MLMData.train_batch`)."""
        N = len(self.train)
        i = step * batch_size + np.arange(batch_size, dtype=np.int64)
        epochs, within = i // N, i % N
        idx = np.empty(batch_size, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            idx[sel] = self._perm(seed, int(e))[within[sel]]
        return idx

    def train_batch(self, step: int, batch_size: int, seed: int, process_index: int = 0,
                    process_count: int = 1) -> Dict[str, np.ndarray]:
        first, per = _share(batch_size, process_index, process_count)
        idx = self.train_rows(step, batch_size, seed)[first:first + per]
        rng = np.random.default_rng([seed, 11, step])
        return mask_rows(self.train[idx], rng, self.vocab_size, self.mask_prob, part=(first, batch_size))

    def heldout_batch(self, j: int, batch_size: int, process_index: int = 0,
                      process_count: int = 1) -> Dict[str, np.ndarray]:
        first, per = _share(batch_size, process_index, process_count)
        idx = (j * batch_size + np.arange(first, first + per)) % len(self.heldout)
        rng = np.random.default_rng([1234, j])
        return mask_rows(self.heldout[idx], rng, self.vocab_size, self.mask_prob, part=(first, batch_size))

    def _counts(self, split: str) -> np.ndarray:
        """Token counts of the packed rows: the prepared whole-stream counts minus the dropped tail."""
        rows = self.train if split == "train" else self.heldout
        c = np.load(self.root / self.index["splits"][split]["counts"]).astype(np.int64)
        tail = rows.read_tokens(rows.n * rows.seq_len, rows.tokens)
        c[: len(c)] -= np.bincount(tail, minlength=len(c))[: len(c)]
        if len(c) < self.vocab_size:
            c = np.concatenate([c, np.zeros(self.vocab_size - len(c), np.int64)])
        return c

    def unigram_baseline(self) -> Dict[str, float]:
        """:meth:`MLMData.unigram_baseline` from the prepared counts (no pass over the corpus)."""
        tr = self._counts("train")[NUM_SPECIAL:].astype(np.float64)
        he = self._counts("heldout")[NUM_SPECIAL:].astype(np.float64)
        p_held = he / he.sum()
        nz = p_held > 0
        q = (tr + 1.0) / (tr.sum() + len(tr))
        return {"heldout_entropy": float(-(p_held[nz] * np.log(p_held[nz])).sum()),
                "train_unigram_xent": float(-(p_held[nz] * np.log(q[nz])).sum())}


def load_shard_data(cfg) -> ShardData:
    """The :class:`ShardData` of ``cfg.data_dir`` for a training config, checked against it: the
    index's source, vocab_size and heldout_fraction must be the config's (the run records what it
    trained on), the corpus must give at least one batch. :class:`~sibert.data.DataError` names the field."""
    index = read_index(cfg.data_dir)
    key = index["key"]
    want = {"source": _source_id(cfg.source), "vocab_size": cfg.vocab_size,
            "heldout_fraction": float(cfg.heldout_fraction)}
    diff = [f"{k} ({key.get(k)!r} in the shards, {v!r} in the config)" for k, v in want.items() if key.get(k) != v]
    if diff:
        raise DataError(f"data_dir: {cfg.data_dir!r} was prepared with other settings: {'; '.join(diff)}; allowed: "
                        f"the settings it was prepared with, or data_dir=''")
    data = ShardData(cfg.data_dir, cfg.seq_len, cfg.vocab_size, cfg.mask_prob)
    for s, rows in (("train", data.train), ("heldout", data.heldout)):
        if len(rows) == 0:
            raise DataError(f"data_dir: the {s} split holds {rows.tokens} tokens < seq_len={cfg.seq_len} (not one row); "
                            f"allowed: a larger corpus or a smaller seq_len")
    return data


def stream_of(data_dir, split: str) -> np.ndarray:
    """A split's whole token stream (tests, small corpora)."""
    index = read_index(data_dir)
    return ShardRows(Path(data_dir), index["splits"][split], 1).read_tokens(0, index["splits"][split]["tokens"])

