"""`scaleinv proofs`: every item of the issue has a row, no row fails, the known errata are found
with their corrected forms and sizes, and the CLI writes JSON / LaTeX and exits non-zero on a fail."""
import json

import pytest
import sympy as sp

from proofs_check import report
from proofs_check.derivation import Derivation
from proofs_check.report import all_derivations, by_id, errata_markdown, to_latex


@pytest.fixture(scope="module")
def derivs():
    return by_id(all_derivations())


def test_every_item_has_rows_and_none_fails(derivs):
    prefixes = {i.split(".")[0] for i in derivs}
    assert prefixes >= {f"P{i}" for i in range(1, 11)}
    for must in ("P1.euler", "P1.norm_growth", "P1.hessian0", "P1.smoothness", "P2.threshold", "P2.keeps_diverging",
                 "P3.gradients", "P3.invariance", "P3.normalized", "P3.gd_steps", "P4.effective_lr", "P5.exp_lr", "P6.norm", "P6.ratio",
                 "P7.clip", "P8.descent", "P8.T0", "P9.band", "P10.sgd", "P10.sgdm", "P10.adamw"):
        assert must in derivs, must
    bad = [(d.id, d.method) for d in derivs.values() if d.status == "fail"]
    assert not bad, bad



def test_each_row_cites_its_own_source(derivs):
    """P1-P9 derive the talk's formulas, P10 Kosson et al.'s (docs/PAPER_NOTES.md): a row cites the
    source its formula comes from, not the talk by default."""
    from scaleinv.report import TALK
    for i, d in derivs.items():
        src = d.as_row().source
        topic = int(i.split(".")[0][1:])
        if topic <= 9:
            assert src.startswith(TALK + ", "), (i, src)
        else:
            assert TALK not in src, (i, src)
        if topic == 10:
            assert src.startswith("Kosson et al. 2024 (arXiv 2305.17212)"), (i, src)

def test_known_errata_are_found_with_corrections(derivs):
    errata = {i for i, d in derivs.items() if d.status == "erratum"}
    assert errata == {"P1.lemma.converse", "P2.keeps_diverging", "P5.exp_lr", "P6.norm"}
    assert "sqrt(2)" in derivs["P6.norm"].discrepancy
    assert "= q" in derivs["P5.exp_lr"].discrepancy and "-2t-1" in derivs["P5.exp_lr"].corrected
    assert all(derivs[i].corrected for i in errata)
    # the talk's second equilibrium formula and the Ex 1 threshold agree with the derivations
    assert derivs["P6.ratio"].status == "pass" and derivs["P2.threshold"].status == "pass"
    md = errata_markdown(list(derivs.values()))
    assert md.count("\n") == 2 + len(errata)


def test_derived_exp_lr_is_not_the_stated_one(derivs):
    d = derivs["P5.exp_lr"]
    q = sp.Symbol("q", positive=True)
    assert sp.simplify(d.stated / d.derived - q) == 0


def test_latex_escapes_and_has_every_row(derivs):
    tex = to_latex(list(derivs.values()))
    assert r"\begin{longtable}" in tex and tex.count(r"\end{longtable}") == 2
    for i in derivs:
        assert i.replace("_", r"\_") in tex
    import re
    text = re.sub(r"\$[^$]*\$", "", tex).replace(" & ", " ")   # drop math mode and column separators
    assert not re.search(r"(?<!\\)[_%&#]", text), "unescaped LaTeX special character in text mode"
    assert not re.search(r"[<>|]", text), "raw < > | render wrongly in LaTeX text mode"


def test_cli_json_latex_and_exit_code(tmp_path, monkeypatch, capsys):
    from scaleinv.cli import main
    rc = main(["proofs", "--json", str(tmp_path / "p.json"), "--latex", str(tmp_path / "p.tex")])
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert rc == 0 and len(rows) == len(all_derivations())
    assert {r["status"] for r in rows} == {"pass", "erratum"}
    assert set(rows[0]) >= {"id", "source", "statement", "predicted", "measured", "tolerance", "status", "note"}
    assert (tmp_path / "p.tex").read_text().startswith(r"\begin{longtable}")
    # a failing row makes the command exit 1
    broken = Derivation("PX.broken", "test", "deliberately failing row", "a", "b", "-", "fail", "test")
    monkeypatch.setattr(report, "all_derivations", lambda **kw: all_derivations() + [broken])
    assert main(["proofs"]) == 1
    assert "FAIL PX.broken" in capsys.readouterr().out
