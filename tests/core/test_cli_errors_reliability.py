"""Issue 28's bad inputs: one line ``<prog>: error: <field>: ...; allowed: ...``, exit code 2,
nothing written. Table-driven like tests/core/test_cli_errors.py (whose cases still hold); every
case here once ended in a traceback, a silent run, a run directory left behind, or a message
naming the wrong field. Each case fails before any heavy work (no training, no sympy)."""
import json
from pathlib import Path

import pytest

from scaleinv.cli import main

SAMPLE = str(Path(__file__).resolve().parents[1] / "sibert" / "data" / "sample")

# in each case's working directory exist: f.txt (a file), adir/ (an empty directory), big.toml
# (steps = 1e20), inf.toml (steps = inf), seed.toml (seed = 1e23), norows/ and noloss/ (runs
# whose metrics rows lack step / loss), oldrun/ (a run's config.json: tiny preset, steps 20)
TRAIN = [
    (["--seed", "-1"], ("seed: ", "allowed: 0..4294967295")),
    (["--seed", "1e23"], ("seed: expected a value of type int, got '1e23'", "allowed: integers")),
    (["--set", "seed=4294967296"], ("seed: ", "allowed: 0..4294967295")),
    (["--config", "seed.toml"], ("seed: ", "allowed: 0..4294967295")),
    (["--set", "steps=3e9"], ("steps: expected a value of type int", "allowed: integers")),
    (["--set", "steps=3000000000"], ("steps: 3000000000 is too large", "allowed: 1..2147483647")),
    (["--config", "big.toml"], ("steps: 100000000000000000000 is too large", "allowed: 1..2147483647")),
    (["--config", "inf.toml"], ("steps: expected a value of type int, got inf", "allowed: integers")),
    (["--set", "hidden=99999999999"], ("hidden: ", "allowed: 1..2147483647")),
    (["--config", "adir"], ("--config: 'adir' is a directory", "allowed: a TOML file")),
    (["--set", "cache_dir=f.txt"], ("cache_dir: ", "is not a directory", "allowed: a directory")),
    (["--set", "cache_dir=f.txt/sub"], ("cache_dir: cannot create", "allowed: a directory")),
    (["--set", "ln_eps=inf"], ("ln_eps: must be a finite number", "allowed: (0, 0.01]")),
    (["--set", "attn_eps=inf"], ("attn_eps: must be a finite number", "allowed: (0, 0.01]")),
    (["--set", "attn_eps=nan"], ("attn_eps: ", "allowed: (0, 0.01]")),
    (["--grace-period", "-1"], ("--grace-period", "must be a finite number of seconds >= 0")),
    # too small a vocabulary: refused up front (was: after building the tokenizer, no allowed values)
    (["--set", "vocab_size=16"], ("vocab_size: 16 is too small for source 'wiki-offline'", "allowed: 1024..2147483647")),
    # more held-out batches than the held-out set has (was: silent for minutes); the sample corpus
    # at seq_len 32, held-out 0.25 has 23 rows = 3 batches of 8
    (["--set", f"source={SAMPLE}", "--set", "vocab_size=300", "--set", "seq_len=32", "--set", "max_positions=32",
      "--set", "hidden=32", "--set", "ffn=64", "--set", "heldout_fraction=0.25", "--set", "batch_size=8",
      "--set", "eval_batches=100000"],
     ("eval_batches: 100000 is more than the held-out set provides (23 rows of 32 tokens = 3 batches of 8)",
      "allowed: 1..3")),
    # a --set contradicting an explicit --model / --optimizer flag (was: a silent hybrid)
    (["--model", "sibert", "--optimizer", "adamw", "--set", "model=bert", "--set", "optimizer=sgd"],
     ("model: --model sibert contradicts --set model=bert", "allowed: ", "sibert, bert")),
    (["--optimizer", "adamw", "--set", "optimizer=sgd"],
     ("optimizer: --optimizer adamw contradicts --set optimizer=sgd", "allowed: ", "sgd-wd-rgc")),
]
CASES = [(["train", "--out", "r"] + a, n) for a, n in TRAIN] + [
    (["train", "--out", "/proc/forbidden/run"], ("--out: cannot create '/proc/forbidden/run'", "allowed:")),
    # --resume names the field the user changed (lr), not steps (which a preset would change)
    (["train", "--out", "oldrun", "--resume", "--set", "lr=0.5"], ("--resume: ", "lr (0.1 -> 0.5)", "allowed")),
    (["train", "--out", "oldrun", "--resume", "--set", "lr=0.5", "--set", "clip_C=3"],
     ("clip_C (2.0 -> 3.0)", "lr (0.1 -> 0.5)")),
    # audit factories that raise, or exit (was: a traceback; exit 0 with no report)
    (["audit", "fac_raises.py:f"], ("factory fac_raises.py:f: raised RuntimeError: boom", "allowed: a function")),
    (["audit", "fac_exits.py:f"], ("factory fac_exits.py:f: called SystemExit(0)", "allowed: a function")),
    # a factory that never returns (was: hung forever), one that sleeps in C code, and a bad limit
    (["audit", "fac_loops.py:f", "--factory-timeout", "2"],
     ("factory fac_loops.py:f: did not return within --factory-timeout 2 s", "allowed: a function")),
    (["audit", "fac_sleeps.py:f", "--factory-timeout", "1.5"],
     ("factory fac_sleeps.py:f: did not return within --factory-timeout 1.5 s", "allowed: a function")),
    (["audit", "fac_loops.py:f", "--factory-timeout", "0"], ("--factory-timeout: must be a finite number",)),
    # output paths whose folder cannot be created, although os.access says writable (as root)
    (["verify", "--quick", "--out", "/proc/forbidden/x"], ("--out: cannot create '/proc/forbidden/x'", "allowed:")),
    (["proofs", "--markdown", "/proc/forbidden/x.md"], ("--markdown: cannot create", "allowed:")),
    (["proofs", "--json", "/proc/x.json"], ("--json: cannot write to '/proc/x.json'",)),
    (["plot", "run", "--out", "/proc/forbidden/x.png"], ("--out: cannot create",)),
    # plot rows without the fields it plots
    (["plot", "norows"], ("runs: ", "line 1 has no 'step', 'loss'", "allowed: rows with step, loss")),
    (["plot", "noloss"], ("runs: ", "line 2 has no 'loss'", "allowed:")),
    (["plot", "badstep"], ("runs: ", "step is 'x'; allowed: a number")),
]
NOT_STEPS = {"--resume: "}   # needles after which "steps cannot change" must NOT appear


def _tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory):
    """A token cache outside the checked tree, holding the sample corpus (vocab 300, held-out 0.25)
    so that a case reaching the data sees no "building tokenizer" line."""
    from sibert.data import load_mlm_data

    root = tmp_path_factory.mktemp("token_cache")
    load_mlm_data(SAMPLE, 300, 32, 0.25, cache_dir=str(root / "sibert"))
    return root


@pytest.fixture
def workdir(tmp_path, token_cache, monkeypatch):
    from sibert.config import apply_overrides, preset

    monkeypatch.setenv("SCALEINV_CACHE", str(token_cache))

    (tmp_path / "f.txt").write_text("keep")
    (tmp_path / "adir").mkdir()
    (tmp_path / "fac_raises.py").write_text("def f():\n    raise RuntimeError('boom')\n")
    (tmp_path / "fac_exits.py").write_text("def f():\n    raise SystemExit(0)\n")
    (tmp_path / "fac_loops.py").write_text("def f():\n    while True:\n        pass\n")
    (tmp_path / "fac_sleeps.py").write_text("import time\n\ndef f():\n    time.sleep(10 ** 6)\n")
    monkeypatch.setattr("sys.dont_write_bytecode", True)   # no __pycache__ from the factory files
    (tmp_path / "big.toml").write_text("steps = 1e20\n")
    (tmp_path / "inf.toml").write_text("steps = inf\n")
    (tmp_path / "seed.toml").write_text("seed = 1e23\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0, "x_norm": 1.0, "angular_update": 0.1}\n')
    (tmp_path / "norows").mkdir()
    (tmp_path / "norows" / "metrics.jsonl").write_text('{"x_norm": 1.0}\n')
    (tmp_path / "noloss").mkdir()
    (tmp_path / "noloss" / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1}\n')
    (tmp_path / "badstep").mkdir()
    (tmp_path / "badstep" / "metrics.jsonl").write_text('{"step": "x", "loss": 1.0}\n')
    (tmp_path / "oldrun").mkdir()
    cfg = apply_overrides(preset("tiny", "sibert"), {"steps": 20})
    (tmp_path / "oldrun" / "config.json").write_text(json.dumps(cfg.to_dict()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check_one_line(workdir, capsys, run, prefix, needles):
    before = _tree(workdir)
    rc = run()
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err                       # one line: no traceback, no usage block
    assert lines[0].startswith(prefix), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])           # the field, and the allowed values
    if set(needles) & NOT_STEPS:
        assert "steps" not in lines[0], lines[0]      # the field that differs, not a false "steps"
    assert _tree(workdir) == before                   # nothing written (no run directory left behind)
    return lines[0]


def test_table_covers_issue_28():
    assert len(CASES) + len(EXPERIMENT) >= 30
    assert {a[0] for a, _ in CASES} >= {"train", "verify", "proofs", "plot", "audit"}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("argv, needles", CASES, ids=[" ".join(a)[:70] for a, _ in CASES])
def test_bad_input_one_line_exit_2_nothing_written(workdir, capsys, argv, needles):
    _check_one_line(workdir, capsys, lambda: main(argv), f"scaleinv {argv[0]}: error: ", needles)


# ----------------------------------------------------------------------------- experiment files
GROUP = '[[group]]\nname = "g"\nmodel = "sibert"\noptimizer = "sgd-wd-rgc"\n'
EXPERIMENT = [
    ('name = "../../escape"\npreset = "tiny"\n' + GROUP, ("name: '../../escape' is not a safe name", "allowed:")),
    ('name = "a/b"\npreset = "tiny"\n' + GROUP, ("name: 'a/b' is not a safe name",)),
    ('name = "e"\npreset = "tiny"\n' + GROUP.replace('"g"', '"../a"'), ("group 0: name: '../a' is not a safe name",)),
    ('name = "e"\npreset = "tiny"\n' + GROUP + 'grid = { lr_drops = ["../x"] }\n', ("run name: 'g_lr_drops../x'",)),
    ('name = "e"\npreset = "tiny"\nbogus = 1\n' + GROUP, ("unknown key(s) 'bogus'", "allowed: name, title")),
    ('name = "e"\npreset = "tiny"\n' + GROUP + "gird = { seed = [0] }\n", ("group 0: unknown key(s) 'gird'", "allowed:")),
    ('name = "e"\npreset = "tiny"\n' + GROUP + "grid = { seed = [] }\n", ("grid: seed = [] gives no runs", "allowed:")),
    ('name = "e"\npreset = "tiny"\n' + GROUP + "grid = {}\n", ("grid: empty", "allowed:")),
    ('name = "e"\npreset = "tiny"\ngroup = []\n', ("group: no [[group]] table", "allowed:")),
]


@pytest.mark.parametrize("text, needles", EXPERIMENT, ids=[str(i) for i in range(len(EXPERIMENT))])
def test_bad_experiment_file_one_line_exit_2_nothing_written(workdir, capsys, text, needles):
    from sibert.experiment import main as experiment_main

    (workdir / "e.toml").write_text(text)
    argv = ["e.toml", "--runs", "runs_root", "--results", "results_root"]
    _check_one_line(workdir, capsys, lambda: experiment_main(argv), "python -m sibert.experiment: error: ", needles)
    assert not (workdir.parent / "escape").exists()


# ----------------------------------------------------------------------------- multi-host variables
ENV = [
    ({"JAX_NUM_PROCESSES": "abc"}, ("JAX_NUM_PROCESSES: 'abc'", "allowed: an integer >= 1")),
    ({"JAX_NUM_PROCESSES": "0"}, ("JAX_NUM_PROCESSES: '0'", "allowed:")),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "5"}, ("JAX_PROCESS_ID: 5 is out of range", "allowed: 0..1")),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "x"}, ("JAX_PROCESS_ID: 'x'", "allowed:")),
    ({"JAX_COORDINATOR_ADDRESS": "nohostport"}, ("JAX_COORDINATOR_ADDRESS: 'nohostport' is not host:port", "allowed:")),
    ({"JAX_COORDINATOR_ADDRESS": "no-such-host.invalid:1234"},
     ("JAX_COORDINATOR_ADDRESS: host 'no-such-host.invalid' does not resolve", "allowed:")),
]


@pytest.mark.parametrize("env, needles", ENV, ids=[" ".join(f"{k}={v}" for k, v in e.items()) for e, _ in ENV])
def test_bad_distributed_environment_one_line(workdir, capsys, monkeypatch, env, needles):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _check_one_line(workdir, capsys, lambda: main(["train", "--out", "r"]), "scaleinv train: error: ", needles)


# ----------------------------------------------------------------------------- vocabulary of a directory
def test_directory_vocab_too_small_refused_before_the_tokenizer(tmp_path, monkeypatch):
    """A directory source's exact alphabet (sibert.data.min_vocab_size) is checked before the
    tokenizer is trained: field + allowed values, nothing cached; at that floor it trains."""
    import sibert.data as data

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"d{i}.txt").write_text(f"Document {i}: the quick brown fox jumps over the lazy dog. " * 3)
    docs = data.load_documents(str(src))
    train_docs, _ = data.split_documents(docs, 0.25)
    need = data.min_vocab_size([t for _, t in train_docs])
    monkeypatch.setattr(data, "train_tokenizer", lambda *a: pytest.fail("tokenizer trained"))
    with pytest.raises(data.DataError) as e:
        data.load_mlm_data(str(src), need - 1, 8, 0.25, cache_dir=str(tmp_path / "cache"))
    msg = str(e.value)
    assert msg.startswith(f"vocab_size: {need - 1} is too small") and f"allowed: {need}.." in msg, msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    monkeypatch.undo()
    tok = data.train_tokenizer([t for _, t in train_docs], need)
    assert tok.get_vocab_size() == need          # the floor is exact: the alphabet, nothing more


# ----------------------------------------------------------------------------- token cache location
def test_token_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    from sibert.data import cache_entry, default_cache_dir

    monkeypatch.delenv("SCALEINV_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "scaleinv" / "sibert"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("text")
    assert cache_entry(str(src), 300, 0.25).parent == tmp_path / "xdg" / "scaleinv" / "sibert"
    monkeypatch.setenv("SCALEINV_CACHE", str(tmp_path / "own"))        # the explicit variable wins
    assert default_cache_dir() == tmp_path / "own" / "sibert"
    home = Path.home() / ".cache" / "scaleinv" / "sibert"
    assert default_cache_dir({"XDG_CACHE_HOME": ""}) == home           # empty = unset
    assert default_cache_dir({}) == home
