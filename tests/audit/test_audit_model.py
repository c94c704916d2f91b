"""Whole-model audit: a SIBERT-like stack of Table-2 blocks is (2;2) per layer with a 0-homogeneous
loss; deliberately broken stacks are flagged at exactly the broken layer; the project's SIBERT and
BERT are audited as the paper says."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from scaleinv.audit import examples as ex
from scaleinv.audit import audit, mask_from_regex, parse_notation

FAST = dict(scales=(1e-2, 1e-1, 1.0, 1e1, 1e2), input_degrees=(0, 1, 2))


@pytest.fixture(scope="module")
def clean_report():
    f, p, b, o = ex.toy_stack(layers=2)
    return audit(f, p, b, **o, **FAST)


def test_clean_stack_every_layer_2_2_and_loss_scale_invariant(clean_report):
    r = clean_report
    assert r.first_break is None and r.target_met is True
    loss = r.loss.degrees["encoder"]
    assert loss.homogeneous and loss.degree == 0 and loss.residual < 1e-4
    assert not r.loss.degrees["head"].consistent          # the head is not scale invariant
    for i in range(2):
        row = r.row(f"encoder/layer_{i}")
        assert row.in_situ("encoder") == "(2;2)" and "expect ok" in row.flags
        assert row.signature.notation() == "(2;2)"
    # the Table-2 chain inside the stack, measured in situ
    assert r.row("encoder/embed").in_situ("encoder") == "(0;1)"
    assert r.row("encoder/embed_proj").in_situ("encoder") == "(1;2)"
    assert r.row("encoder/layer_0/ln_attn").in_situ("encoder") == "(2;0)"
    assert r.row("encoder/layer_0/attention").in_situ("encoder") == "(0,0,0;2)"
    assert r.row("encoder/layer_0/attention").signature.notation() == "(x,x,x;x+2)"
    assert r.row("encoder/layer_0/ffn").signature.notation() == "(0;2)"
    assert r.row("encoder/final_ln").in_situ("encoder") == "(2;0)"


def test_per_group_degrees(clean_report):
    """Per top-level submodule and per layer: scaling only layer_1 leaves layer_0's output
    unchanged (degree 0) and makes layer_1's output a sum h + c^2 f(h): not homogeneous."""
    r = clean_report
    assert {"all", "encoder", "head", "encoder/layer_0", "encoder/layer_1", "encoder/embed"} <= set(r.groups)
    l0 = r.row("encoder/layer_0").degrees
    assert l0["encoder/layer_1"].degree == 0 and l0["head"].degree == 0 and l0["all"].degree == 2
    assert not r.row("encoder/layer_1").degrees["encoder/layer_1"].consistent
    assert r.row("encoder/embed").degrees["encoder/embed"].degree == 1
    assert r.row("encoder/layer_0/attention/query").degrees["encoder/layer_0"].degree == 1


def test_broken_stack_flagged_at_exactly_the_broken_layers():
    """layer_1: a bias after W_o (added to a 2-homogeneous tensor); layer_2: softmax attention."""
    f, p, b, o = ex.toy_stack(layers=3, bias_at=1, softmax_at=2)
    r = audit(f, p, b, **o, **FAST)
    assert r.target_met is False and not r.loss.degrees["encoder"].consistent
    assert r.first_break == "encoder/layer_1/attention/out", r.summary_lines()
    row = r.row("encoder/layer_1/attention/out")
    assert "mismatch" in row.flags and row.in_situ("encoder") == "(1;✗)"
    assert row.signature.notation() == "(0;1)"                 # a Dense with bias is only (0;1)
    assert "adds a bias (degree 1) to a degree-2 tensor" in row.explanation
    assert "expect ok" in r.row("encoder/layer_0").flags
    assert "expect FAIL" in r.row("encoder/layer_1").flags
    assert r.row("encoder/layer_1").in_situ("encoder") == "(2;✗)"
    # the softmax layer comes after the first break (its input is no longer homogeneous) but its
    # own signature flags it
    sm = r.row("encoder/layer_2/attention")
    assert sm.in_situ("encoder") == "(✗,✗,✗;✗)" and sm.signature.notation() == "not homogeneous"
    assert "intrinsic" in sm.flags and "exp (softmax?)" in sm.explanation
    flagged = {x.name for x in r.breaks}
    assert {"encoder/layer_1/attention/out", "encoder/layer_2/attention"} <= flagged
    assert not any(n.startswith("encoder/layer_0") for n in flagged)


def test_softmax_layer_is_first_break_when_upstream_is_clean():
    f, p, b, o = ex.toy_stack(layers=2, softmax_at=1)
    r = audit(f, p, b, **o, **FAST, signatures=False)
    assert r.first_break == "encoder/layer_1/attention", r.summary_lines()
    assert r.row("encoder/layer_1/attention").in_situ("encoder") == "(0,0,0;✗)"
    assert "expect ok" in r.row("encoder/layer_0").flags


def test_affine_final_layernorm_named_as_the_cause():
    """An affine final LN makes the encoder output 1-homogeneous; the first block that breaks is
    the head (its constant bias meets a degree-1 tensor) and the explanation names the LN."""
    f, p, b, o = ex.toy_stack(layers=1, affine_final_ln=True)
    r = audit(f, p, b, **o, **FAST)
    assert r.row("encoder/final_ln").in_situ("encoder") == "(2;1)"
    assert r.row("encoder/final_ln").signature.notation() == "(x;1)"
    assert r.first_break == "head"
    assert "its input comes from encoder/final_ln (x;1) - an affine norm resets the degree to 1" \
        in r.first_break_explanation


def test_non_homogeneous_model_reported_as_such():
    f, p, x = ex.softplus_model()
    r = audit(f, p, x, target_degree=2, **FAST)
    loss = r.loss.degrees["all"]
    assert loss.status == "not homogeneous" and loss.degree is None and loss.residual > 1e-2
    assert r.target_met is False
    assert r.first_break == "FeedForward" and "log1p (softplus?)" in r.first_break_explanation


class _TwoLinearPlusBias(nn.Module):
    """x W1 W2 + b: the bias is added to a 2-homogeneous tensor (zero-initialised here)."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, use_bias=False, name="w1")(x)
        return nn.Dense(3, use_bias=True, bias_init=nn.initializers.zeros, name="w2")(h)


def test_zero_bias_is_randomized_so_it_cannot_hide_a_break():
    """With the bias at zero the function is homogeneous *at that point* (degree 2); the default
    generic point randomises zero leaves and finds the break, generic=False does not."""
    m, x = _TwoLinearPlusBias(), jnp.ones((2, 3))
    p = m.init(jax.random.PRNGKey(0), x)["params"]
    f = lambda params, batch: jnp.sum(m.apply({"params": params}, batch) ** 2)
    exact = audit(f, p, x, **FAST, generic=False)
    assert exact.first_break is None and exact.loss.degrees["all"].degree == 4
    generic = audit(f, p, x, **FAST)
    assert generic.first_break == "w2" and "mismatch" in generic.row("w2").flags
    assert generic.meta["randomized_zero_leaves"] == ["['w2']['bias']"]
    assert not generic.loss.degrees["all"].consistent


class _Sowing(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, use_bias=False)(x)
        self.sow("intermediates", "h_squared", h * h)
        return jnp.sum(h)


def test_sow_and_aux_values_are_audited():
    m = _Sowing()
    x = jnp.ones((2, 3))
    p = m.init(jax.random.PRNGKey(0), x)["params"]

    def apply_fn(params, batch):
        out = m.apply({"params": params}, batch)
        return out ** 2, {"out": out, "cube": out ** 3}

    r = audit(apply_fn, p, x, depths=(1,), **FAST)
    assert r.loss.degrees["all"].degree == 2
    assert r.row("_Sowing/sow:intermediates/h_squared").degrees["all"].degree == 2
    assert r.row("aux['cube']").degrees["all"].degree == 3
    assert r.row("aux['out']").degrees["all"].degree == 1


def test_user_groups_and_bad_arguments():
    f, p, b, o = ex.toy_stack(layers=1)
    groups = {"queries": mask_from_regex(p, r"attention/query")}
    r = audit(f, p, b, groups=groups, target_group="queries", signatures=False, **FAST)
    assert r.row("encoder/layer_0/attention/query").degrees["queries"].degree == 1
    assert r.groups["queries"] and all("query" in n for n in r.groups["queries"])
    with pytest.raises(ValueError, match="target_group 'nope' is not a group; allowed"):
        audit(f, p, b, target_group="nope")
    with pytest.raises(ValueError, match="selects no parameter"):
        mask_from_regex(p, "no_such_param")
    with pytest.raises(ValueError, match="scales must hold"):
        audit(f, p, b, scales=(1.0,))
    assert parse_notation("(0,1;2)") == ((0, 1), 2)
    with pytest.raises(ValueError, match="expected degree notation"):
        parse_notation("2;2")


def test_eager_mode_gives_the_same_degrees():
    m = _Sowing()
    x = jnp.ones((2, 3))
    p = m.init(jax.random.PRNGKey(0), x)["params"]
    f = lambda params, batch: m.apply({"params": params}, batch) ** 2
    r_jit, r_eager = audit(f, p, x, **FAST), audit(f, p, x, **FAST, jit=False)
    assert [r.name for r in r_jit.rows] == [r.name for r in r_eager.rows]
    for a, e in zip(r_jit.rows, r_eager.rows):
        assert {g: f.label() for g, f in a.degrees.items()} == {g: f.label() for g, f in e.degrees.items()}
        if a.signature is not None:
            assert a.signature.notation() == e.signature.notation()
    assert r_eager.row("Dense_0").signature.notation() == "(x;x+1)"


def test_float64_audit():
    with jax.enable_x64(True):
        f, p, b, o = ex.toy_stack(layers=1, dtype=jnp.float64)
        r = audit(f, p, b, **o, **FAST, signatures=False)
        loss = r.loss.degrees["encoder"]
        assert loss.rtol == 1e-9 and loss.homogeneous and loss.degree == 0 and loss.residual < 1e-12
        assert r.row("encoder/layer_0").in_situ("encoder") == "(2;2)"


sibert_audit = pytest.importorskip("sibert.audit_factories", reason="sibert package is part of this repo")


def test_sibert_audit_every_layer_2_2_loss_scale_invariant():
    f, p, b, o = sibert_audit.sibert(layers=2, hidden=16, ffn=32, vocab=31, seq_len=8)
    r = audit(f, p, b, **o, **FAST)
    assert r.first_break is None and r.target_met is True
    assert r.loss.degrees["encoder"].degree == 0 and r.loss.degrees["encoder"].residual < 1e-4
    for i in range(2):
        assert r.row(f"encoder/layer_{i}").in_situ("encoder") == "(2;2)"
        assert r.row(f"encoder/layer_{i}").signature.notation() == "(2;2)"
    assert r.row("encoder/final_ln").in_situ("encoder") == "(2;0)"


def test_bert_audit_pinpoints_softmax_gelu_postnorm():
    f, p, b, o = sibert_audit.bert(layers=2, hidden=16, ffn=32, vocab=31, seq_len=8)
    r = audit(f, p, b, **o, **FAST)
    assert r.target_met is False and not r.loss.degrees["encoder"].consistent
    flagged = {row.name: row for row in r.breaks}
    assert r.first_break == "encoder/layer_0/attention/query"          # bias on a 2-homogeneous q
    assert "its input comes from encoder/embed_ln" in r.first_break_explanation
    assert "intrinsic" in flagged["encoder/layer_0/attention"].flags
    assert "softmax" in flagged["encoder/layer_0/attention"].explanation
    assert "intrinsic" in flagged["encoder/layer_0/ffn"].flags
    assert "GeLU" in flagged["encoder/layer_0/ffn"].explanation
    assert "postnorm" in flagged["encoder/layer_0"].flags and "PostNorm" in flagged["encoder/layer_0"].explanation
    assert "expect FAIL" in flagged["encoder/layer_1"].flags
