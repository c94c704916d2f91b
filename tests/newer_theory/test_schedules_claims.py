"""`scaleinv verify --only S3` end to end (schedules group, Defazio 2025) and the lag-onset helper."""
import json

import numpy as np

from scaleinv.cli import main
from toyproblems import claims_schedules as S


def test_onset_is_first_crossing():
    target = np.ones(10)
    ratio = np.array([1.0, 0.95, 0.92, 0.85, 0.95, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert S._onset(ratio, target, 10) == 1.0 - 3 / 10          # first step below 1/1.1 = 0.909
    assert S._onset(np.ones(10), target, 10) == 0.0


def test_verify_corrected_wd_group(tmp_path):
    rc = main(["verify", "--quick", "--only", "S3", "--out", str(tmp_path), "--seed", "1"])
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert [r["id"] for r in rows] == ["S3.1", "S3.2", "S3.3", "S3.4"]
    for r in rows:
        assert "Defazio" in r["source"] and r["tolerance"] and r["status"] == "pass", r
    assert rc == 0 and (tmp_path / "S3.png").stat().st_size > 10_000
