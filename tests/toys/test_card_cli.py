"""``scaleinv card`` (toyproblems.card): the quick card of sgd-wd against the registry's predictions
(and the same card failing when the predictions are deliberately 2x off), a user factory's card
(no predictions), and bad input: one line ``scaleinv card: error: ...``, exit 2, nothing written."""
import dataclasses
import json
from pathlib import Path

import pytest

from scaleinv import registry
from scaleinv.cli import main
from toyproblems import card as K

PREDICTED_ROWS = {"equilibrium.sq_norm", "equilibrium.angle", "t_eq.slope", "invariance.loss.sq_norm",
                  "invariance.loss.angle", "invariance.params.sq_norm", "invariance.params.angle"}


def _rows(res):
    return {r.id: r for r in res["rows"]}


@pytest.mark.timeout(900)
def test_sgd_wd_card_matches_the_registry_and_a_2x_prediction_fails():
    res = K.card(K.subject("sgd-wd"), quick=True, only=("vector",))
    rows = _rows(res)
    assert PREDICTED_ROWS <= set(rows)
    for rid in PREDICTED_ROWS:
        r = rows[rid]
        assert r.status == "pass", (rid, r)
        assert r.tolerance.startswith("|meas/pred - 1| <= 0.05")
        assert abs(r.measured / r.predicted - 1) <= 0.05
    # the predictions are the registry's closed forms (eta = 0.1, lambda = 0.02, sigma = 1), not measurements
    eta, lam = res["meta"]["eta"], res["meta"]["weight_decay"]
    assert rows["equilibrium.sq_norm"].predicted == pytest.approx((eta / (lam * (2 - eta * lam))) ** 0.5)
    assert rows["equilibrium.angle"].predicted == pytest.approx((2 * eta * lam) ** 0.5)
    assert rows["t_eq.slope"].predicted == pytest.approx(1 / (2 * eta * lam))
    assert rows["invariance.loss.sq_norm"].predicted == pytest.approx(10.0)   # ||x*||^2 ~ sigma

    e = registry.get("sgd-wd")
    wrong = dataclasses.replace(e, angle=lambda eta, wd: 2 * e.angle(eta, wd),
                                sq_norm=lambda eta, wd, sigma, dim: 2 * e.sq_norm(eta, wd, sigma, dim),
                                t_eq_slope=lambda eta, wd: 2 * e.t_eq_slope(eta, wd))
    registry.register(wrong, replace=True)
    try:
        bad = _rows(K.card(K.subject("sgd-wd"), quick=True, only=("vector",)))
    finally:
        registry.register(e, replace=True)
    for rid in ("equilibrium.sq_norm", "equilibrium.angle", "t_eq.slope"):
        assert bad[rid].status == "fail", (rid, bad[rid])
        assert bad[rid].measured == pytest.approx(rows[rid].measured)   # same run, only the prediction changed


def _tree(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_text("keep")
    (tmp_path / "fac.py").write_text(
        "import optax\n"
        "def ok():\n    return optax.sgd(0.1)\n"
        "def raises():\n    raise RuntimeError('boom')\n"
        "def exits():\n    raise SystemExit(0)\n"
        "def loops():\n    while True:\n        pass\n"
        "def wrong_type():\n    return 3\n"
        "def bad_update():\n"
        "    def update(g, s, p=None):\n        raise KeyError('no state')\n"
        "    return optax.GradientTransformation(lambda p: (), update)\n")
    monkeypatch.setattr("sys.dont_write_bytecode", True)   # no __pycache__ from the factory file
    monkeypatch.chdir(tmp_path)
    return tmp_path


BAD = [
    (["nope"], "optimizer: unknown value 'nope'; allowed: sgd, sgd-wd, "),
    (["sgd-wd", "--all"], "optimizer: give one optimizer"),
    (["nosuchmodule_xyz:f"], "optimizer: factory cannot import 'nosuchmodule_xyz'"),
    (["missing.py:f"], "optimizer: factory file 'missing.py' does not exist"),
    (["fac.py:nothere"], "optimizer: factory module 'fac.py' has no attribute 'nothere'"),
    (["fac.py:raises"], "optimizer: factory fac.py:raises raised RuntimeError: boom"),
    (["fac.py:exits"], "optimizer: factory fac.py:exits called SystemExit(0)"),
    (["fac.py:loops", "--factory-timeout", "1"], "optimizer: factory fac.py:loops did not return within 1 s"),
    (["fac.py:wrong_type"], "must return an optax.GradientTransformation, got int"),
    (["fac.py:bad_update"], "its transform raised KeyError on one step"),
    (["sgd-wd", "--out", "f.txt"], "--out: 'f.txt' exists and is not a directory"),
    (["sgd-wd", "--seed", "-1"], "--seed: -1 is out of range"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(workdir, capsys, argv, needle):
    before = _tree(workdir)
    rc = main(["card"] + argv + ["--out", "cards"] if "--out" not in argv else ["card"] + argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("scaleinv card: error: ") and needle in lines[0], lines[0]
    if "factory" in needle or "GradientTransformation" in needle or "transform raised" in needle:
        assert "allowed: a function returning an optax GradientTransformation" in lines[0]
    assert _tree(workdir) == before


@pytest.mark.timeout(900)
def test_cli_card_of_a_user_factory_has_no_predictions(workdir, capsys):
    rc = main(["card", "fac.py:ok", "--quick", "--out", "cards"])
    assert rc == 0
    doc = json.loads((workdir / "cards" / "fac.py_ok.json").read_text())
    assert (workdir / "cards" / "fac.py_ok.md").is_file() and (workdir / "cards" / "fac.py_ok.png").stat().st_size > 10000
    rows = {r["id"]: r for r in doc["rows"]}
    assert all(r["predicted"] == "no prediction" for r in doc["rows"])
    assert all(r["status"] in ("measured", "failed") for r in doc["rows"])
    # plain SGD (lr 0.1) on Ex 2: alpha = 1 is solved; the state of optax.sgd is empty
    assert isinstance(rows["ex2.alpha_1"]["measured"], float)
    assert rows["state.bytes_per_param"]["measured"] == 0
    # no weight decay: the norm keeps growing, so no equilibrium is claimed
    assert rows["equilibrium.sq_norm"]["measured"].startswith("no equilibrium")
