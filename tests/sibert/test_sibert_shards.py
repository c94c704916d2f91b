"""Prepared token shards (sibert.shards, ``scaleinv prepare-data``): the same rows and batches as the
in-memory path, read lazily, each process only its share; bad input refused with one line, exit 2."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import SAMPLE, set_args, tiny_overrides  # noqa: E402

from scaleinv.cli import main  # noqa: E402
from sibert.data import DataError, load_mlm_data  # noqa: E402
from sibert.shards import DEFAULT_SHARD_TOKENS, ShardData, prepare, read_index, stream_of  # noqa: E402

SEQ, VOCAB, HELD = 32, 300, 0.25
KEYS = ("tokens", "mlm_positions", "mlm_labels", "mlm_weights")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The sample corpus as shards of 500 tokens (many rows cross a shard boundary: 500 % 32 != 0)
    and through the in-memory path."""
    root = tmp_path_factory.mktemp("shards")
    index = prepare(SAMPLE, root / "out", VOCAB, HELD, shard_tokens=500, progress=False)
    mem = load_mlm_data(SAMPLE, VOCAB, SEQ, HELD, cache_dir=str(root / "cache"))
    return root / "out", index, mem


def _equal(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype, k


def test_same_tokenizer_streams_rows_and_baseline_as_in_memory(prepared):
    out, index, mem = prepared
    sh = ShardData(out, SEQ, VOCAB)
    assert Path(sh.tokenizer_path).read_text() == Path(mem.tokenizer_path).read_text()   # the same tokenizer
    for s in ("train", "heldout"):
        cache_stream = np.load(Path(mem.tokenizer_path).parent / f"{s}.npy")
        np.testing.assert_array_equal(stream_of(out, s), cache_stream)
        shards = index["splits"][s]["shards"]
        assert all(x["tokens"] == 500 for x in shards[:-1]) and 0 < shards[-1]["tokens"] <= 500
    assert len(index["splits"]["train"]["shards"]) >= 4
    np.testing.assert_array_equal(np.asarray(sh.train), mem.train)
    np.testing.assert_array_equal(np.asarray(sh.heldout), mem.heldout)
    assert sh.train.shape == mem.train.shape and len(sh.heldout) == len(mem.heldout)
    assert sh.unigram_baseline() == mem.unigram_baseline()        # exact: the same counts
    assert sh.tokenizer_vocab == mem.tokenizer_vocab


@pytest.mark.parametrize("seed", [0, 3])
def test_same_train_and_heldout_batches_as_in_memory(prepared, seed):
    out, _, mem = prepared
    sh = ShardData(out, SEQ, VOCAB)
    N, B = len(mem.train), 8
    # steps in the first epoch, across the first epoch boundary and in a later epoch
    for step in (0, 1, 5, N // B, N // B + 1, 3 * N // B + 2):
        _equal(sh.train_batch(step, B, seed), mem.train_batch(step, B, seed))
    for j in range(4):
        _equal(sh.heldout_batch(j, B), mem.heldout_batch(j, B))


def test_batches_are_a_pure_function_of_step_and_seed(prepared):
    """Resume: a fresh reader gives step s's batch without having produced steps < s."""
    out, _, _ = prepared
    walked = ShardData(out, SEQ, VOCAB)
    for s in range(40):
        last = walked.train_batch(s, 8, 1)
    _equal(ShardData(out, SEQ, VOCAB).train_batch(39, 8, 1), last)


@pytest.mark.parametrize("count", [2, 4])
def test_each_process_reads_only_its_share(prepared, count):
    """Simulated processes p = 0..count-1: the union of their batches is the single-process global
    batch (rows in order), and each process read exactly its own rows, no others."""
    out, _, mem = prepared
    B, seed = 8, 2
    ref = ShardData(out, SEQ, VOCAB)
    for step in (0, 7, 31):
        rows = ref.train_rows(step, B, seed)
        parts, touched = [], []
        for p in range(count):
            d = ShardData(out, SEQ, VOCAB)
            seen = []
            orig = d.train.read_tokens
            d.train.read_tokens = lambda a, b, orig=orig, seen=seen: (seen.append((a, b)), orig(a, b))[1]
            parts.append(d.train_batch(step, B, seed, process_index=p, process_count=count))
            touched.append(seen)
            per = B // count
            assert [a // SEQ for a, _ in seen] == rows[p * per:(p + 1) * per].tolist()
            assert all(b - a == SEQ for a, b in seen) and d.train.reads == per
        _equal({k: np.concatenate([q[k] for q in parts]) for k in KEYS}, mem.train_batch(step, B, seed))
    held = [ShardData(out, SEQ, VOCAB).heldout_batch(1, B, p, count) for p in range(count)]
    _equal({k: np.concatenate([q[k] for q in held]) for k in KEYS}, mem.heldout_batch(1, B))


def test_share_must_divide_the_batch(prepared):
    d = ShardData(prepared[0], SEQ, VOCAB)
    with pytest.raises(ValueError, match="not divisible"):
        d.train_batch(0, 8, 0, process_index=0, process_count=3)
    with pytest.raises(ValueError):
        d.train_batch(0, 8, 0, process_index=2, process_count=2)


def test_one_directory_serves_every_seq_len(prepared):
    out, _, _ = prepared
    root = Path(out).parent
    mem = load_mlm_data(SAMPLE, VOCAB, 16, HELD, cache_dir=str(root / "cache"))
    np.testing.assert_array_equal(np.asarray(ShardData(out, 16, VOCAB).train), mem.train)


def test_cli_prepare_then_rerun_is_a_no_op(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["prepare-data", SAMPLE, str(out), "--vocab-size", str(VOCAB), "--heldout-fraction", str(HELD),
            "--shard-tokens", "1000"]
    assert main(argv) == 0
    cap = capsys.readouterr()
    rep = json.loads(cap.out.strip().splitlines()[-1])
    index = read_index(out)
    assert rep["train_tokens"] == index["splits"]["train"]["tokens"] > 0
    assert rep["train_shards"] == len(index["splits"]["train"]["shards"]) == -(-rep["train_tokens"] // 1000)
    assert "prepare-data: tokenise" in cap.err                   # the progress lines (stderr is not a tty)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "o"]  # no private build directory left
    from scaleinv.cli.prepare_data import DEFAULT_SHARD_TOKENS as cli_default
    assert cli_default == DEFAULT_SHARD_TOKENS


# ----------------------------------------------------------------------------- bad input table
def _tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch, prepared):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a.txt").write_bytes(b"some text\x00\x01\x02 binary")
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "a.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("   \n\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.md").write_text("mine")
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)))
    # shards of the sample corpus from another tokenizer (vocab 300 vs 320 below)
    import shutil
    shutil.copytree(prepared[0], tmp_path / "other")
    # a corpus of two short documents: fewer training rows (seq 32) than one batch of 8
    (tmp_path / "small").mkdir()
    from sibert.data import is_heldout
    for i in range(12):   # held-out documents long enough for a few rows, training ones short: 1-2 rows
        text = f"document number {i} has a few words in it. " * (20 if is_heldout(f"d{i}.txt", HELD) else 1)
        (tmp_path / "small" / f"d{i}.txt").write_text(text)
    assert prepare(str(tmp_path / "small"), tmp_path / "smallshards", 200, 0.25, progress=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train_argv(data_dir, source, **kw):
    o = tiny_overrides("cache", source=source, data_dir=data_dir, steps=2, **kw)
    return ["train", "--out", "run"] + set_args(o)


PREP = ["--vocab-size", "320", "--heldout-fraction", str(HELD)]
CASES = [
    (["prepare-data", "bin", "o"] + PREP, "SOURCE: 'bin/a.txt' is binary (NUL bytes); allowed: UTF-8 text files"),
    (["prepare-data", "latin1", "o"] + PREP, "SOURCE: 'latin1/a.txt' is not UTF-8 text (byte 3)"),
    (["prepare-data", "blank", "o"] + PREP, "SOURCE: 'blank' holds no non-empty documents; allowed:"),
    (["prepare-data", "bin.dat", "o"] + PREP, "SOURCE: 'bin.dat' is a file, not a directory"),
    (["prepare-data", "nope", "o"] + PREP, "SOURCE: 'nope' does not exist"),
    (["prepare-data", SAMPLE, "o", "--shard-tokens", "0"] + PREP, "--shard-tokens: must be an integer in 1..2147483647"),
    (["prepare-data", SAMPLE, "o", "--shard-tokens", "-5"] + PREP, "--shard-tokens: must be an integer in 1..2147483647"),
    (["prepare-data", SAMPLE, "o", "--vocab-size", "20", "--heldout-fraction", "0.25"],
     "--vocab-size: 20 is too small for source"),
    (["prepare-data", SAMPLE, "o", "--vocab-size", "320", "--heldout-fraction", "0.999999"],
     "--heldout-fraction: 0.999999 leaves an empty split"),
    (["prepare-data", SAMPLE, "other"] + PREP,
     "OUT: '", ),
    (["prepare-data", SAMPLE, "busy"] + PREP, "is not empty and holds no token shards; allowed: a new or empty directory"),
    (["prepare-data", SAMPLE, "bin.dat"] + PREP, "exists and is not a directory"),
    (["prepare-data", SAMPLE, "/proc/forbidden/o"] + PREP, "OUT: cannot create"),
    # training from shards: a corpus smaller than one batch, settings that are not the shards', no index
    (_train_argv("smallshards", "small", vocab_size=200),
     "batch_size: 8 is larger than the training corpus"),
    (_train_argv("other", SAMPLE, vocab_size=320), "data_dir: 'other' was prepared with other settings: vocab_size (300"),
    (_train_argv("other", "small"), "data_dir: 'other' was prepared with other settings: source"),
    (_train_argv("busy", SAMPLE), "data_dir: 'busy' holds no index.json; allowed: a directory written by"),
]
NEEDLE_OTHER = "holds token shards of another tokenizer / corpus (differs in vocab_size)"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a[:3] + a[-2:])[:70] for a, _ in CASES])
def test_bad_input_one_line_exit_2_nothing_written(workdir, capsys, argv, needle):
    before = _tree(workdir)
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"scaleinv {argv[0]}: error: ") and needle in lines[0], lines[0]
    if argv[2] == "other":
        assert NEEDLE_OTHER in lines[0] and "allowed: a new or empty directory" in lines[0], lines[0]
    assert _tree(workdir) == before


def test_prepare_api_refuses_before_writing(tmp_path):
    with pytest.raises(DataError, match="SOURCE"):
        prepare(str(tmp_path / "missing"), tmp_path / "o", VOCAB, HELD)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- training through the shards
@pytest.mark.timeout(900)
def test_training_from_shards_equals_training_in_memory(prepared, tmp_path):
    """A run with data_dir writes the same metrics (every field but wall-clock throughput) and the
    same evaluation as the in-memory run of the same config."""
    from sibert.config import apply_overrides, preset
    from sibert.train import train

    out, _, _ = prepared
    rows = {}
    for name, extra in (("mem", {}), ("shards", {"data_dir": str(out)})):
        cfg = apply_overrides(preset("tiny"), tiny_overrides(tmp_path / "cache", steps=6, eval_every=3,
                                                              ckpt_every=6, log_layer_angles=False, **extra))
        summary = train(cfg, tmp_path / name, log=lambda s: None)
        assert summary["status"] == "ok"
        m = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        e = [json.loads(x) for x in (tmp_path / name / "eval.jsonl").read_text().splitlines()]
        for r in m:
            r.pop("tokens_per_s")
        rows[name] = (m, e, summary["unigram_baseline"])
    assert len(rows["mem"][0]) == 6 and len(rows["mem"][1]) == 2
    assert rows["shards"] == rows["mem"]
    assert (tmp_path / "shards" / "tokenizer.json").read_text() == (tmp_path / "mem" / "tokenizer.json").read_text()


@pytest.mark.timeout(1200)
def test_shipped_corpus_same_rows_and_batches_as_in_memory(tmp_path):
    """The shipped corpus at the mini preset's settings (vocab 2048, seq 64, held-out 0.05, batch
    64; docs/results/sibert/): the same packed rows and batches through the shards, so the committed
    results are those of either path."""
    prepare("wiki-offline", tmp_path / "wiki", 2048, 0.05, progress=False)
    mem = load_mlm_data("wiki-offline", 2048, 64, 0.05, cache_dir=str(tmp_path / "cache"))
    sh = ShardData(tmp_path / "wiki", 64, 2048)
    assert len(mem.train) > 20000
    np.testing.assert_array_equal(np.asarray(sh.train), mem.train)
    np.testing.assert_array_equal(np.asarray(sh.heldout), mem.heldout)
    for step in (0, 1, 2999, 5999):
        _equal(sh.train_batch(step, 64, 0), mem.train_batch(step, 64, 0))
    for j in (0, 15):
        _equal(sh.heldout_batch(j, 64), mem.heldout_batch(j, 64))
    assert sh.unigram_baseline() == mem.unigram_baseline()


def test_bench_corpus_copies_keep_the_words_and_shuffle_their_order(tmp_path):
    """The 30x corpus of benchmarks/data_pipeline.py: copy c of document i has document i's words
    (same multiset) in an order of its own."""
    from benchmarks.data_pipeline import make_corpus
    from sibert.data import load_documents

    docs = load_documents("wiki-offline")
    make_corpus(2, tmp_path)
    long_doc = max(range(len(docs)), key=lambda i: len(docs[i][1]))
    a, b = ((tmp_path / f"c{c:02d}" / f"d{long_doc:05d}.txt").read_text().split() for c in (0, 1))
    assert sorted(a) == sorted(b) == sorted(docs[long_doc][1].split()) and a != b
    assert len(list((tmp_path / "c01").glob("*.txt"))) == len(docs)


@pytest.mark.timeout(3000)
def test_two_real_processes_from_shards_match_one_process_in_memory(prepared, tmp_path):
    """Two processes joined by jax.distributed (2 fake CPU devices each), each feeding only its rows
    read from the shards (sibert.train.device_batch -> make_array_from_process_local_data), train the
    per-step losses and held-out loss of one 4-device process fed in memory (float32 tolerance, as
    tests/sibert/test_sibert_multihost.py)."""
    import socket
    import subprocess

    from _sibert_helpers import fast_compile, run_two_processes

    from sibert.devices import fake_cpu_devices_env

    steps = 4
    over = tiny_overrides(tmp_path / "cache", steps=steps, eval_every=steps, ckpt_every=steps, batch_size=8)
    cmd = lambda out, o: [sys.executable, "-m", "scaleinv.cli", "train", "--out", str(out), "--no-progress"] + set_args(o)
    losses = lambda run: [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    r = subprocess.run(cmd(tmp_path / "one", over), env=fast_compile(fake_cpu_devices_env(4)), capture_output=True,
                       text=True, timeout=1400)
    assert r.returncode == 0, r.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = run_two_processes(cmd(tmp_path / "two", {**over, "data_dir": str(prepared[0])}), port)
    got = json.loads((tmp_path / "two" / "summary.json").read_text())
    ref = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert got["processes"] == 2 and got["devices"] == 4 and got["config"]["data_dir"] == str(prepared[0])
    a, b = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(a) == len(b) == steps and len(set(np.round(b, 4))) > 1
    np.testing.assert_allclose(a, b, rtol=2e-5)
    np.testing.assert_allclose([o["heldout_loss"] for o in outs], ref["final_eval"]["heldout_loss"], rtol=2e-5)
