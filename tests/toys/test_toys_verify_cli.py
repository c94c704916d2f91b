"""`scaleinv verify` end to end on a subset of claims (the full --quick run is CI's main job)."""
import json
import re
import subprocess
import sys


from scaleinv.cli import main


def test_verify_subset_writes_report_and_figures(tmp_path):
    rc = main(["verify", "--quick", "--only", "C1,C7", "--out", str(tmp_path), "--seed", "3"])
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["rows"]
    assert {r["id"].split(".")[0] for r in rows} == {"C1", "C7"}
    for r in rows:
        assert set(r) >= {"id", "source", "statement", "predicted", "measured", "tolerance", "status"}
        assert r["status"] in ("pass", "fail", "erratum")
        # every source cites the talk by its in-repo reference (docs/PAPER_NOTES.md), no file outside the repo
        assert r["source"].startswith("Li et al. ICML 2022 talk (docs/PAPER_NOTES.md)"), r["source"]
    # the exp-LR claim as stated (same x0) is an erratum; the exact map passes
    status = {r["id"]: r["status"] for r in rows}
    assert status["C7.exact"] == "pass" and status["C7.stated_same_init"] == "erratum"
    assert rc == (1 if any(r["status"] == "fail" for r in rows) else 0) and rc == 0
    assert (tmp_path / "C1.png").stat().st_size > 10_000 and (tmp_path / "C7.png").stat().st_size > 10_000
    assert report["meta"]["seed"] == 3
    assert (tmp_path / "report.md").read_text().count("\n| C") == len(rows)
    # the toy runners' float64 mode must not leak into the rest of the process (SIBERT is float32)
    import jax.numpy as jnp
    assert jnp.ones(1).dtype == jnp.float32


def test_verify_unknown_claim_is_a_clear_error(tmp_path, capsys):
    # exit 2 (was 1) and the out dir is not created (issue 14)
    assert main(["verify", "--only", "C99", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^scaleinv verify: error: --only: unknown claim 'C99'.*allowed", err) and err.count("\n") == 1
    assert not (tmp_path / "v").exists()


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "scaleinv.cli", "verify", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--quick" in out.stdout
