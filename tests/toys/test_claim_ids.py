"""Claim ids are declared with each claim (toyproblems.ids.claim_id), not derived from list positions
(issue 27): unique, the same strings as before, and unchanged when a list is reordered or a claim is
inserted."""
import json
from pathlib import Path

import pytest

from scaleinv.cli import verify as V

REPO = Path(__file__).resolve().parents[2]

# every id as it was when the ids came from list positions (docs/results/verify/report.json's groups)
KNOWN = {
    "claim_homogeneity": "C1", "claim_ex1_divergence": "C2", "claim_unbalanced_mf": "C3",
    "claim_normalized_mf": "C4", "claim_equilibrium": "C5", "claim_log_dependence": "C6",
    "claim_exp_lr": "C7", "claim_clipping": "C8",
    "claim_equilibrium_angle": "R1", "claim_equilibrium_norm": "R2", "claim_equilibrium_time": "R3",
    "claim_rotational_wrapper": "R4", "claim_normalized_mf_equilibrium": "R5",
    "claim_schedule_tracking": "S1", "claim_schedule_lag": "S2", "claim_corrected_wd": "S3",
    "claim_schedule_real_loss": "S4",
    "claim_adamw_noise_norm": "N1", "claim_adamw_noise_cosine": "N2", "claim_adamw_noise_beta2_eps": "N3",
    "claim_gradient_influence": "M1", "claim_dataset_scaling": "M2", "claim_edge_of_stability": "E1",
}


def test_ids_are_declared_unique_and_unchanged():
    claims = V.selected_claims(None)
    ids = {c.__name__: c.claim_id for c in claims}
    assert ids == KNOWN
    assert len(set(ids.values())) == len(ids)
    # the committed report's row groups are exactly the declared ids
    rows = json.loads((REPO / "docs/results/verify/report.json").read_text())["rows"]
    assert {r["id"].split(".")[0] for r in rows} == set(KNOWN.values())
    for cid in KNOWN.values():
        assert V.selected_claims(cid)[0].claim_id == cid


def _fake(cid, name):
    from toyproblems.ids import claim_id

    def fake(seed, quick, out_dir):
        return []
    fake.__name__ = name
    return claim_id(cid)(fake)


def test_ids_stable_under_reordering_and_insertion(monkeypatch):
    import toyproblems.claims as TC
    import toyproblems.claims_timescale as TT

    before = {cid: c.__name__ for cid, c in V.claims_by_id(V.selected_claims(None)).items()}
    monkeypatch.setattr(TC, "CLAIMS", [_fake("C9", "claim_new_first")] + list(reversed(TC.CLAIMS)))
    monkeypatch.setattr(TT, "TIMESCALE_CLAIMS", [_fake("M3", "claim_new_m")] + list(reversed(TT.TIMESCALE_CLAIMS)))
    after = {cid: c.__name__ for cid, c in V.claims_by_id(V.selected_claims(None)).items()}
    assert after == {**before, "C9": "claim_new_first", "M3": "claim_new_m"}
    assert V.selected_claims("M2,C1")[0].__name__ == "claim_dataset_scaling"
    assert V.selected_claims("M2,C1")[1].__name__ == "claim_homogeneity"


def test_undeclared_or_duplicate_id_is_an_error(monkeypatch):
    import toyproblems.claims_eos as TE

    def bare(seed, quick, out_dir):
        return []
    monkeypatch.setattr(TE, "EOS_CLAIMS", [bare])
    with pytest.raises(ValueError, match="declares no id"):
        V.selected_claims(None)
    monkeypatch.setattr(TE, "EOS_CLAIMS", [_fake("C1", "claim_dup")])
    with pytest.raises(ValueError, match="declared twice"):
        V.selected_claims(None)
    from toyproblems.ids import claim_id
    for bad in ("c1", "C", "C1.2", "CC1", 5):
        with pytest.raises(ValueError):
            claim_id(bad)


def test_a_row_outside_its_claims_id_fails_the_run(monkeypatch, tmp_path):
    import toyproblems.claims_eos as TE
    from scaleinv.report import Row

    def stray(seed, quick, out_dir):
        return [Row("E2.1", "s", "t", 0.0, 0.0, "tol", "pass")]
    stray.claim_id = "E1"
    monkeypatch.setattr(TE, "claim_edge_of_stability", stray)
    with pytest.raises(RuntimeError, match="E2.1"):
        V._run_claims([("toyproblems.claims_eos", "claim_edge_of_stability")], 0, True, str(tmp_path))
