"""`scaleinv verify` end to end on a subset of claims (the full --quick run is CI's main job)."""
import json
import re
import subprocess
import sys

import pytest

from scaleinv.cli import main


def test_verify_subset_writes_report_and_figures(tmp_path):
    rc = main(["verify", "--quick", "--only", "C1,C7", "--out", str(tmp_path), "--seed", "3", "--jobs", "1"])
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


def test_jobs_gives_the_same_rows_in_claim_order(tmp_path):
    # two worker processes (spawned) against this process: identical rows, in the claim order
    # given, not the order of completion (S3, ~0.3 s, finishes long before C1, ~4 s)
    only = ["--quick", "--only", "C1,S3", "--seed", "1"]
    assert main(["verify", *only, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert main(["verify", *only, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("two", "one"))
    assert two["meta"]["jobs"] == 2 and one["meta"]["jobs"] == 1
    assert two["rows"] == one["rows"]
    assert [r["id"].split(".")[0] for r in two["rows"]][0] == "C1" and two["rows"][-1]["id"].startswith("S3")
    assert (tmp_path / "two" / "C1.png").stat().st_size > 10_000


@pytest.mark.parametrize("jobs", ["0", "-2", "many", "1.5"])
def test_bad_jobs_is_one_line_exit_2_nothing_written(tmp_path, capsys, jobs):
    assert main(["verify", "--quick", "--only", "C7", "--jobs", jobs, "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"scaleinv verify: error: --jobs: expected a positive integer or auto, got .*\n", err), err
    assert not (tmp_path / "v").exists()


def test_jobs_auto_is_capped_by_tasks_and_cores():
    from scaleinv.cli.verify import parse_jobs, usable_cores

    assert parse_jobs("auto", 1) == 1
    assert parse_jobs("auto", 100) == usable_cores()
    assert parse_jobs("8", 3) == 3 and parse_jobs("2", 5) == 2


def test_tasks_keep_a_group_together_groups_first():
    # a group's claims share its module's simulations: one task each, before the talk's claims
    from scaleinv.cli.verify import selected_claims, tasks

    claims = selected_claims("C7,R1,C1,R2,S1")
    work = [[c.__name__ for c in t] for t in tasks(claims)]
    assert work == [["claim_equilibrium_angle", "claim_equilibrium_norm"], ["claim_schedule_tracking"],
                    ["claim_exp_lr"], ["claim_homogeneity"]]


def test_tasks_longest_first_by_last_run_seconds_untimed_first():
    # LPT order from the timing history: the sum over a group's claims; an untimed claim first
    from scaleinv.cli.verify import selected_claims, tasks

    claims = selected_claims("C7,R1,C1,R2,S1")
    secs = {"claim_exp_lr": 10.0, "claim_homogeneity": 1.0, "claim_equilibrium_angle": 5.0,
            "claim_equilibrium_norm": 0.3, "claim_schedule_tracking": 7.0}
    names = lambda work: [[c.__name__ for c in t] for t in work]
    assert names(tasks(claims, secs)) == [["claim_exp_lr"], ["claim_schedule_tracking"],
                                          ["claim_equilibrium_angle", "claim_equilibrium_norm"],
                                          ["claim_homogeneity"]]
    del secs["claim_homogeneity"]
    assert names(tasks(claims, secs))[0] == ["claim_homogeneity"]


def test_timing_history_round_trip_and_damaged_file(tmp_path, monkeypatch):
    from scaleinv.cli.verify import load_seconds, save_seconds

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert load_seconds(False) == {}
    save_seconds(False, {"claim_a": 3.5})
    save_seconds(True, {"claim_a": 1.0})
    save_seconds(False, {"claim_b": 2.0})          # merged into the full-run history
    assert load_seconds(False) == {"claim_a": 3.5, "claim_b": 2.0} and load_seconds(True) == {"claim_a": 1.0}
    path = tmp_path / "scaleinv" / "verify_seconds.json"
    path.write_text("{not json")
    assert load_seconds(False) == {}                # a damaged history only loses the ordering
    save_seconds(False, {"claim_c": 1.0})
    assert load_seconds(False) == {"claim_c": 1.0}


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "scaleinv.cli", "verify", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--quick" in out.stdout
