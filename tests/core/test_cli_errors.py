"""Every command's bad input: one line ``scaleinv <command>: error: ...`` naming the field, exit
code 2, nothing written (issue 14). Table-driven; each case fails before any heavy work."""
import sys
from pathlib import Path

import pytest

from scaleinv.cli import main

SAMPLE = str(Path(__file__).resolve().parent.parent / "sibert" / "data" / "sample")

# (argv, expected message fragment); in each case's working directory exist: a regular file
# f.txt, an empty directory adir/, and run/ with a metrics.jsonl (a plottable run)
CASES = [
    # verify
    (["verify", "--only", "C99"], "--only: unknown claim 'C99'; allowed:"),
    (["verify", "--out", "f.txt"], "--out: 'f.txt' exists and is not a directory"),
    (["verify", "--out", "f.txt/sub"], "--out: cannot create"),
    (["verify", "--json", "adir"], "--json: 'adir' is a directory"),
    (["verify", "--seed", "x"], "argument --seed: invalid int value"),
    (["verify", "--bogus"], "unrecognized arguments: --bogus"),
    # proofs
    (["proofs", "--markdown", "f.txt/x.md"], "--markdown: cannot create"),
    (["proofs", "--json", "adir"], "--json: 'adir' is a directory"),
    (["proofs", "--latex", "f.txt/x.tex"], "--latex: cannot create"),
    # train
    (["train", "--out", "f.txt"], "--out:"),
    (["train", "--out", "f.txt/run"], "--out: cannot create"),
    (["train", "--out", "r", "--set", "steps=0"], "steps: must be an integer >= 1"),
    (["train", "--out", "r", "--set", f"source={SAMPLE}", "--set", "batch_size=1000000000"],
     "batch_size: 1000000000 needs an estimated"),
    (["train", "--out", "r", "--resume"], "--resume:"),
    (["train", "--out", "r", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["train", "--out", "r", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["train", "--out", "r", "--set", "lr"], "--set expects key=value"),
    (["train", "--out", "run"], "--out:"),   # not empty, no --resume
    # plot
    (["plot", "norun"], "runs: no metrics.jsonl in norun"),
    (["plot", "run", "--labels", "a,b"], "--labels: 2 names for 1 runs"),
    (["plot", "run", "--out", "f.txt/x.png"], "--out: cannot create"),
    (["plot", "run", "--out", "x.gif"], "--out: unknown image type '.gif'"),
    (["plot", "run", "--window", "0"], "--window: must be an integer >= 1"),
    # bench
    (["bench", "--only", "nope"], "--only: unknown item(s) 'nope'; allowed:"),
    (["bench", "--repeats", "2"], "--repeats: must be >= 5"),
    (["bench", "--json", "adir"], "--json: 'adir' is a directory"),
    (["bench", "--peak-tflops", "-1"], "--peak-tflops: must be a finite number > 0"),
    # audit
    (["audit", "missing.module:f"], "factory: no module named 'missing.module'"),
    (["audit", "missing_file.py:f"], "factory: file 'missing_file.py' does not exist"),
    (["audit", "scaleinv.audit.examples"], "factory must be 'module:function'"),
    (["audit", "sibert.audit_factories:no_such_factory"], "has no attribute 'no_such_factory'"),
    (["audit", "sibert.audit_factories:sibert", "--json", "adir"], "--json: 'adir' is a directory"),
    (["audit", "sibert.audit_factories:sibert", "--depths", "a,b"], "--depths must be comma-separated integers"),
    # figures
    (["figures", "--only", "99"], "--only: no notebook starts with '99'; allowed:"),
    (["figures", "--fig-dir", "f.txt"], "--fig-dir: 'f.txt' exists and is not a directory"),
    (["figures", "--timeout", "0"], "--timeout: must be >= 1"),
    # export
    (["export", "norun", "--to", "hf", "x"], "RUN_DIR: "),
    (["export", "run", "--to", "onnx", "x"], "--to: unknown format 'onnx'; allowed: hf"),
    (["export", "run", "--to", "hf", "f.txt"], "OUT_DIR: "),
    (["export", "run"], "the following arguments are required: --to"),
    # prepare-data (more cases, which need a tokenizer or a corpus: tests/sibert/test_sibert_shards.py)
    (["prepare-data", "missing_dir", "out"], "SOURCE: 'missing_dir' does not exist; allowed: 'wiki-offline'"),
    (["prepare-data", "f.txt", "out"], "SOURCE: 'f.txt' is a file, not a directory; allowed:"),
    (["prepare-data", "adir", "out"], "SOURCE: 'adir' holds no *.txt files; allowed:"),
    (["prepare-data", SAMPLE, "out", "--shard-tokens", "0"], "--shard-tokens: must be an integer in 1..2147483647, got 0"),
    (["prepare-data", SAMPLE, "f.txt", "--vocab-size", "300", "--heldout-fraction", "0.25"],
     "exists and is not a directory; allowed: a new or empty directory"),
    (["prepare-data", SAMPLE, "/proc/forbidden/out", "--vocab-size", "300", "--heldout-fraction", "0.25"],
     "OUT: cannot create"),
    (["prepare-data", SAMPLE, "out", "--heldout-fraction", "1.5"], "--heldout-fraction: must be a number in (0, 1)"),
    # card (the factory cases: tests/toys/test_card_cli.py)
    (["card", "nope"], "optimizer: unknown value 'nope'; allowed: sgd, sgd-wd"),
    (["card"], "optimizer: give one optimizer"),
    (["card", "sgd-wd", "--out", "f.txt"], "--out: 'f.txt' exists and is not a directory"),
    # the dispatcher
    (["nosuchcommand"], "argument {"),
]


def _tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_text("keep")
    (tmp_path / "adir").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0, "x_norm": 1.0, "angular_update": 0.1}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(workdir, capsys, argv, needle):
    before = _tree(workdir)
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    from scaleinv.cli import SUBCOMMANDS
    cmd = argv[0] if argv[0] in SUBCOMMANDS else None
    prefix = f"scaleinv {cmd}: error: " if cmd else "scaleinv: error: "
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err                       # one line, no traceback, no usage block
    assert lines[0].startswith(prefix) and needle in lines[0], lines[0]
    assert _tree(workdir) == before                   # nothing written


def test_table_has_at_least_25_cases_covering_every_command():
    from scaleinv.cli import SUBCOMMANDS
    assert len(CASES) >= 25
    assert {a[0] for a, _ in CASES} >= set(SUBCOMMANDS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_one_line_exit_2_nothing_written(workdir, capsys, argv, needle):
    _check(workdir, capsys, argv, needle)


def test_figures_without_the_dev_extra(workdir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jupytext", None)      # import jupytext -> ModuleNotFoundError
    _check(workdir, capsys, ["figures", "--only", "01"], "install the dev extra: pip install -e '.[dev]'")


def test_help_exits_0(capsys):
    assert main(["verify", "--help"]) == 0
    assert "--only" in capsys.readouterr().out
