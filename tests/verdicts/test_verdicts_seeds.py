"""A verdict must hold for every seed (issue 27): ``scaleinv verify --quick`` of the seed-sensitive groups at
seeds 0..4, so that a tolerance fitted to one seed fails here. The groups: those whose measurement is
noisy enough that a row flipped between seeds 0-4 before its error budget was set (tools/seed_spread.py,
docs/results/verify/seed_spread.json): S2 (AdamW lag onset), S4 (SGDC on a real loss), M1 (tail decay
time), M2 (dataset-size rule); and the rows whose tolerances issue 27 tightened with the corrected forms: S1 / S3
(AdamW / AdamC bias, same simulation as S2) and N1 (AdamW pure-noise norm with the beta2 factor). Every row with a budget also has its tolerance in [budget, 3 x budget] and
equal to its check's limit. ~15-30 s per seed on 2 cores.
"""
import json
import math

import pytest

from scaleinv.cli import main

GROUPS = "S1,S2,S3,S4,M1,M2,N1"
SEEDS = (0, 1, 2, 3, 4)


def _limit(check: dict) -> float:
    if check["kind"] == "close":
        return check["rtol"] if check["rtol"] > 0 else check["atol"]
    return check["hi"] if check["hi"] is not None else check["lo"]


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_sensitive_groups_pass_at_every_seed(tmp_path, seed):
    rc = main(["verify", "--quick", "--only", GROUPS, "--seed", str(seed), "--jobs", "1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert {r["id"].split(".")[0] for r in rows} == set(GROUPS.split(","))
    fails = [(r["id"], r["measured"], r["tolerance"]) for r in rows if r["status"] == "fail"]
    assert not fails and rc == 0, (seed, fails)
    budgets = {r["id"]: r for r in rows if "budget" in r["extra"]}
    assert {"S2.7", "S2.8", "S4.2", "M1.4", "M2.1", "M2.2", "M2.3"} <= set(budgets)
    # issue 27 (corrected forms): the AdamW / AdamC bias rows, every S2 row, S1.2 and N1
    assert {"S1.2", "S1.3", "S1.4", "S3.3", "S3.4", "N1.1", "N1.2", "N1.3"} | {f"S2.{i}" for i in range(1, 13)} <= set(budgets)
    for rid, r in budgets.items():
        b = r["extra"]["budget"]
        assert math.isclose(b["total"], b["approx"] + b["noise"]) and b["total"] > 0, rid
        assert b["total"] <= b["tolerance"] * (1 + 1e-12) and b["tolerance"] <= 3 * b["total"] * (1 + 1e-12), rid
        lims = [_limit(c) for c in r["extra"]["check"]["pass"]]
        if rid != "M2.3":     # a lower bound: its budget's tolerance is the room between seed mean and threshold
            assert any(math.isclose(v, b["tolerance"]) for v in lims), (rid, lims, b)
        else:
            assert math.isclose(lims[0], 0.2) and b["tolerance"] > 0
