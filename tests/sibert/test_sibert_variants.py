"""Model variants as specs (issue 30 item 3): the presets are two ModelSpecs (their outputs bit-identical
to main: tests/sibert/test_sibert_precision.py's reference test) and the ablation "SIBERT with softmax
attention" is reported NOT scale invariant by the homogeneity audit, at the attention blocks."""
import pytest

from scaleinv.audit import audit
from sibert import audit_factories as fa
from sibert.model import BERT_SPEC, SIBERT_SPEC, VARIANTS, ModelConfig, ModelSpec

FAST = dict(scales=(1e-2, 1e-1, 1.0, 1e1, 1e2), input_degrees=(0, 1, 2))


def test_presets_are_specs_and_bad_fields_are_named():
    assert ModelConfig(scale_invariant=True).spec == SIBERT_SPEC == VARIANTS["sibert"]
    assert ModelConfig(scale_invariant=False).spec == BERT_SPEC
    assert ModelConfig(scale_invariant=False, hidden_act="gelu_new").spec.activation == "gelu_new"
    assert ModelConfig(variant="sibert-softmax").spec.attention == "softmax"
    with pytest.raises(ValueError, match="attention: unknown value 'x'; allowed: si, softmax"):
        ModelSpec(attention="x")
    with pytest.raises(ValueError, match="variant: unknown value 'nope'"):
        ModelConfig(variant="nope")


def test_sibert_softmax_ablation_not_scale_invariant_breaks_at_attention():
    f, p, b, o = fa.sibert_softmax(layers=2, hidden=16, ffn=32, vocab=31, seq_len=8)
    r = audit(f, p, b, **o, **FAST)
    assert r.target_met is False and not r.loss.degrees["encoder"].homogeneous
    assert r.first_break == "encoder/layer_0/attention"
    flagged = {row.name: row for row in r.breaks}
    for i in range(2):
        assert "intrinsic" in flagged[f"encoder/layer_{i}/attention"].flags
        assert "softmax" in flagged[f"encoder/layer_{i}/attention"].explanation
        assert "expect FAIL" in flagged[f"encoder/layer_{i}"].flags
    # only attention breaks: the FFN of the same spec keeps SIBERT's (0;2)-type homogeneity
    assert not any(n.endswith("/ffn") for n in flagged), sorted(flagged)
