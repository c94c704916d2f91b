"""``scaleinv bench --only data``: the prepared-shard data path (:mod:`sibert.shards`) measured.

Corpora: 1x = the shipped corpus (``wiki-offline``, the mini preset's data: vocabulary 2048,
held-out 0.05); Kx (K = 30, ``--quick``: 3) = K copies of its documents in a temporary directory,
copy c with each document's words in an order shuffled by a generator seeded (c, document) --
the same words, new text. Both are prepared with :func:`sibert.shards.prepare`.

Rows:

* ``data.rss``: peak RSS (``VmHWM``) of a process (a subprocess each: imports JAX, opens the
  data, then puts N global batches of the mini preset (64 x 64) on the device, as the trainer
  feeds them) reading the Kx shards vs the 1x shards. Target: flat (Kx / 1x < 1.05).
  Beside it, the same processes with the in-memory path (:func:`sibert.data.load_mlm_data`
  from its token cache, built from the shards' streams, which the tests prove equal) and with a
  ``np.load(mmap_mode='r')`` reader of the same shards instead of ``os.pread`` (why the
  shards are read with ``pread``: the mapped pages a process touched count in its RSS).
* ``data.tokenise``: tokens/s of :func:`~sibert.shards.prepare`'s encode pass (chunks of
  ``encode_batch`` + shard writing) vs :func:`sibert.data.encode_stream` (one ``encode_batch`` over
  every document, the in-memory path) on the 1x corpus, same tokenizer; the Kx preparation's
  figures (tokenizer training and encode seconds, peak RSS) in ``extra``.
* ``data.reader``: random batches of rows read by the shards' ``os.pread`` reader vs grain's
  ``ArrayRecordDataSource`` over an array_record file of the same rows (the choice of format,
  by measurement; "peer not installed" without grain), the mmap reader in the note.
* ``data.loader``: the mini SIBERT training step (:mod:`benchmarks.sibert_step`) fed as the
  trainer feeds it (the next batch built from the Kx shards by :func:`sibert.train.device_batch`
  while the step runs) vs fed pre-made device batches; ratio = synthetic time / real-data time
  (= real-data throughput / synthetic throughput). Target >= 0.98.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.rows import BenchRow, judged

VOCAB, HELD, SEQ, BATCH = 2048, 0.05, 64, 64       # the mini preset (sibert/config.py)
MODES = ("shards", "mmap", "memory")


def make_corpus(copies: int, out: Path) -> Path:
    """``copies`` copies of the shipped documents, words shuffled per (copy, document)."""
    from sibert.data import load_documents

    docs = load_documents("wiki-offline")
    for c in range(copies):
        d = out / f"c{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i, (_, text) in enumerate(docs):
            words = text.split()
            np.random.default_rng([c, i]).shuffle(words)
            (d / f"d{i:05d}.txt").write_text(" ".join(words), encoding="utf-8")
    return out


def memory_cache(source: str, shards: Path, cache_dir: Path) -> None:
    """The in-memory path's token cache entry for ``source``, from the shards (same streams and
    tokenizer: tests/sibert/test_sibert_shards.py), so the peer needs no second tokenisation."""
    from sibert.data import TOKENIZER_ALGO, cache_entry
    from sibert.shards import stream_of

    d = cache_entry(source, VOCAB, HELD, str(cache_dir))
    d.mkdir(parents=True, exist_ok=True)
    for s in ("train", "heldout"):
        np.save(d / f"{s}.npy", stream_of(shards, s))
    shutil.copy(shards / "tokenizer.json", d / "tokenizer.json")
    (d / "meta.json").write_text(json.dumps({"source": source, "tokenizer_algo": TOKENIZER_ALGO, "from": str(shards)}))


def _status() -> Dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def worker(mode: str, source: str, shards: str, cache_dir: str, n: int) -> Dict[str, float]:
    """Subprocess body: open the data by ``mode``, feed ``n`` global batches, report memory."""
    import jax

    from sibert.train import device_batch, make_mesh

    mesh = make_mesh()
    base = _status()["VmRSS"]
    if mode == "memory":
        from sibert.data import load_mlm_data
        data = load_mlm_data(source, VOCAB, SEQ, HELD, cache_dir=cache_dir)
    else:
        from sibert.shards import ShardData
        data = ShardData(shards, SEQ, VOCAB)
        if mode == "mmap":
            for rows in (data.train, data.heldout):
                _use_mmap(rows)
    t0 = time.perf_counter()
    for step in range(n):
        jax.block_until_ready(device_batch(data, mesh, BATCH, step, 0))
    dt = time.perf_counter() - t0
    st = _status()
    # VmHWM (peak resident set of this process image); ru_maxrss is not used: on Linux it keeps the
    # forking parent's peak across exec (measured: every worker reported the bench process's 240 MiB)
    return {"peak_rss": st["VmHWM"], "rss_after_imports": base, **st, "rows": len(data.train), "batches": n,
            "s_per_batch": dt / n}


def _use_mmap(rows) -> None:
    """Read ``rows`` through ``np.load(mmap_mode='r')`` views of the shards instead of pread."""
    maps = [np.load(p, mmap_mode="r") for p in rows.paths]

    def read_tokens(start, stop):
        out = np.empty(stop - start, np.int32)
        k = int(np.searchsorted(rows.starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            end = min(stop, int(rows.starts[k + 1]))
            off = int(rows.starts[k])
            out[pos - start:end - start] = maps[k][pos - off:end - off]
            pos, k = end, k + 1
        return out

    rows.read_tokens = read_tokens


def measured(mode: str, source: str, shards: Path, cache_dir: Path, n: int) -> Dict[str, float]:
    code = (f"import json; from benchmarks.data_pipeline import worker; "
            f"print(json.dumps(worker({mode!r}, {source!r}, {str(shards)!r}, {str(cache_dir)!r}, {n})))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"worker {mode} {source}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare_measured(source: str, out: Path) -> Dict[str, float]:
    """``scaleinv prepare-data`` in a subprocess: its index figures and peak RSS."""
    code = ("import json, resource; from sibert.shards import prepare; "
            f"ix = prepare({source!r}, {str(out)!r}, {VOCAB}, {HELD}, progress=False); "
            "print(json.dumps({'seconds': ix['seconds'], 'tokens': sum(s['tokens'] for s in ix['splits'].values()), "
            "'documents': sum(s['documents'] for s in ix['splits'].values()), "
            "'shards': sum(len(s['shards']) for s in ix['splits'].values()), "
            "'peak_rss': [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0]}))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode:
        raise RuntimeError(f"prepare {source}: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _encode_peer(shards: Path) -> Dict[str, float]:
    """The in-memory path's encode (one encode_batch over every document) on the shipped corpus."""
    from tokenizers import Tokenizer

    from sibert.data import encode_stream, load_documents

    docs = [t for _, t in load_documents("wiki-offline")]
    tok = Tokenizer.from_file(str(shards / "tokenizer.json"))
    t0 = time.perf_counter()
    n = len(encode_stream(tok, docs))
    return {"seconds": time.perf_counter() - t0, "tokens": n}


def _loader_rows(shards: Path, repeats: int, steps: int) -> BenchRow:
    import jax

    from benchmarks.sibert_step import make_step, tiny_config
    from benchmarks.timing import compare, paired_ratio
    from sibert.shards import ShardData
    from sibert.train import device_batch

    cfg = tiny_config("mini")
    _, info = make_step(cfg)
    step_fn, box = info["step_fn"], info["box"]
    from sibert.train import make_mesh
    mesh = make_mesh()
    data = ShardData(shards, cfg.seq_len, cfg.vocab_size, cfg.mask_prob)
    premade = [device_batch(data, mesh, cfg.batch_size, s, cfg.seed) for s in range(8)]
    pos = {"step": 0}

    def real():
        s0 = pos["step"]
        batch = device_batch(data, mesh, cfg.batch_size, s0, cfg.seed)
        for s in range(s0, s0 + steps):
            box["state"], m = step_fn(box["state"], batch)
            batch = device_batch(data, mesh, cfg.batch_size, s + 1, cfg.seed)   # built while the step runs
        pos["step"] = s0 + steps
        return box["state"], m["loss"]

    def synthetic():
        for s in range(steps):
            box["state"], m = step_fn(box["state"], premade[s % len(premade)])
        return box["state"], m["loss"]

    def loader_only():
        s0 = pos["step"]
        for s in range(s0, s0 + steps):
            out = device_batch(data, mesh, cfg.batch_size, s, cfg.seed)
        return out

    res = compare({"real": real, "synthetic": synthetic, "loader": loader_only}, repeats=repeats)
    ratio = paired_ratio(res, "synthetic", "real")
    jax.block_until_ready(box["state"])
    step_real, step_syn = res["real"]["median_s"] / steps, res["synthetic"]["median_s"] / steps
    return BenchRow(
        "data.loader", f"mini SIBERT step fed from the shards vs pre-made batches ({steps} steps per round)",
        "step + next batch from shards", "step on pre-made device batches", step_real, step_syn, "s/step",
        ratio, "synthetic time / real-data time (= real-data throughput / synthetic)", ">= 0.98",
        judged(ratio, lower=0.98),
        note=f"the loader alone: {res['loader']['median_s'] / steps * 1e3:.2f} ms per batch "
             f"({res['loader']['median_s'] / res['synthetic']['median_s'] * 100:.1f}% of a step); batches of "
             f"{cfg.batch_size} x {cfg.seq_len}",
        extra={"rounds": {k: v["times_s"] for k, v in res.items()}, "loader_s_per_batch": res["loader"]["median_s"] / steps,
               "rows": len(data.train)})


def _reader_row(shards: Path, tmp: Path, repeats: int, batches: int) -> BenchRow:
    """Random batches of rows: the shards' pread reader vs grain's ArrayRecordDataSource over an
    array_record file of the same rows (one record per row of SEQ tokens, group_size:1 as grain
    asks; rows must then be fixed at preparation, one file per seq_len), and an mmap reader."""
    from benchmarks.timing import compare, paired_ratio
    from sibert.shards import ShardData

    data = ShardData(shards, SEQ, VOCAB)
    n = len(data.train)
    idx = np.random.default_rng(0).integers(0, n, (batches, BATCH))
    mm = ShardData(shards, SEQ, VOCAB)
    _use_mmap(mm.train)
    contestants = {"pread": lambda: [data.train[i] for i in idx], "mmap": lambda: [mm.train[i] for i in idx]}
    try:
        import grain.python as gp
        from array_record.python.array_record_module import ArrayRecordWriter
    except ImportError:
        gp = None
    if gp is not None:
        path = tmp / f"rows{SEQ}.array_record"
        w = ArrayRecordWriter(str(path), "group_size:1")
        rows = np.asarray(data.train)
        for r in rows:
            w.write(r.tobytes())
        w.close()
        ds = gp.ArrayRecordDataSource([str(path)])
        contestants["array_record"] = lambda: [np.stack([np.frombuffer(x, np.int32) for x in
                                                         ds.__getitems__(i.tolist())]) for i in idx]
        np.testing.assert_array_equal(contestants["array_record"]()[0], rows[idx[0]])
    res = compare(contestants, repeats=repeats)
    per = {k: v["median_s"] / batches for k, v in res.items()}
    if gp is None:
        return BenchRow("data.reader", f"random batches of {BATCH} rows of {SEQ} tokens", "shards, os.pread",
                        "grain ArrayRecordDataSource", per["pread"], None, "s/batch", None, "", "",
                        "peer not installed", note="pip install grain (array_record)")
    ratio = paired_ratio(res, "array_record", "pread")
    return BenchRow("data.reader", f"random batches of {BATCH} rows of {SEQ} tokens ({n} rows)", "shards, os.pread",
                    "grain ArrayRecordDataSource (one record per row)", per["pread"], per["array_record"],
                    "s/batch", ratio, "peer time / our time (speed-up)", "", "report",
                    note=f"np.load(mmap_mode='r') reader: {per['mmap'] * 1e3:.2f} ms/batch; pread keeps the process's "
                         f"RSS flat (row data.rss_mmap) and lets one directory serve every seq_len",
                    extra={"rounds": {k: v["times_s"] for k, v in res.items()}})


def bench(quick: bool, repeats: int) -> List[BenchRow]:
    copies = 3 if quick else 30
    n = 200 if quick else 1000
    tmp = Path(tempfile.mkdtemp(prefix="scaleinv-bench-data-"))
    try:
        big_src = make_corpus(copies, tmp / "corpus")
        prep = {"1x": prepare_measured("wiki-offline", tmp / "shards1"),
                f"{copies}x": prepare_measured(str(big_src), tmp / "shardsK")}
        srcs = {"1x": ("wiki-offline", tmp / "shards1"), f"{copies}x": (str(big_src), tmp / "shardsK")}
        for source, sh in srcs.values():
            memory_cache(source, sh, tmp / "cache")
        mem = {(mode, size): measured(mode, source, sh, tmp / "cache", n)
               for mode in MODES for size, (source, sh) in srcs.items()}
        K = f"{copies}x"
        MiB = 2 ** 20
        rows = []
        r = mem[("shards", K)]["peak_rss"] / mem[("shards", "1x")]["peak_rss"]
        rows.append(BenchRow(
            "data.rss", f"peak RSS of a process feeding {n} batches of {BATCH} x {SEQ}, {K} vs 1x corpus",
            f"shards (pread), {K}", "shards (pread), 1x", mem[("shards", K)]["peak_rss"] / MiB,
            mem[("shards", "1x")]["peak_rss"] / MiB, "MiB", r, f"{K} / 1x peak RSS", "< 1.05",
            judged(r, upper=1.05),
            note=f"{mem[('shards', K)]['rows']} vs {mem[('shards', '1x')]['rows']} training rows; in-memory path "
                 f"{mem[('memory', K)]['peak_rss'] / MiB:.0f} vs {mem[('memory', '1x')]['peak_rss'] / MiB:.0f} MiB, "
                 f"np.load(mmap_mode='r') reader {mem[('mmap', K)]['peak_rss'] / MiB:.0f} vs "
                 f"{mem[('mmap', '1x')]['peak_rss'] / MiB:.0f} MiB (rows data.rss_memory, data.rss_mmap)",
            extra={f"{m}/{s}": v for (m, s), v in mem.items()}))
        for mode, what in (("memory", "in-memory path (sibert.data, from its token cache)"),
                           ("mmap", "shards read through np.load(mmap_mode='r')")):
            r = mem[(mode, K)]["peak_rss"] / mem[(mode, "1x")]["peak_rss"]
            rows.append(BenchRow(
                f"data.rss_{mode}", f"the same peak RSS, {what}", f"{mode}, {K}", f"{mode}, 1x",
                mem[(mode, K)]["peak_rss"] / MiB, mem[(mode, "1x")]["peak_rss"] / MiB, "MiB", r,
                f"{K} / 1x peak RSS", "", "report",
                note=f"at the end: RssAnon {mem[(mode, K)].get('RssAnon', 0) / MiB:.0f} MiB, RssFile "
                     f"{mem[(mode, K)].get('RssFile', 0) / MiB:.0f} MiB ({K})"))
        peer = _encode_peer(tmp / "shards1")
        ours_tps = prep["1x"]["tokens"] / prep["1x"]["seconds"]["encode"]
        peer_tps = peer["tokens"] / peer["seconds"]
        rows.append(BenchRow(
            "data.tokenise", "tokenise throughput of the encode pass, shipped corpus, same tokenizer",
            "prepare-data (chunked encode_batch + shards)", "sibert.data.encode_stream (in memory)",
            ours_tps, peer_tps, "tokens/s", ours_tps / peer_tps, "ours / peer throughput", "", "report",
            note=f"{K}: {prep[K]['tokens']:,} tokens encoded at {prep[K]['tokens'] / prep[K]['seconds']['encode']:,.0f} "
                 f"tokens/s, tokenizer training {prep[K]['seconds']['tokenizer']:.0f} s (1x: "
                 f"{prep['1x']['seconds']['tokenizer']:.1f} s), prepare peak RSS {prep[K]['peak_rss'] / MiB:.0f} MiB "
                 f"(1x: {prep['1x']['peak_rss'] / MiB:.0f} MiB: the tokenizer is trained on every training "
                 f"document in memory)",
            extra={"prepare": prep, "peer": peer}))
        rows.append(_reader_row(tmp / "shards1", tmp, repeats, 50 if quick else 200))
        rows.append(_loader_rows(tmp / "shardsK", repeats, 8 if quick else 32))
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
