"""The audit's local signature recovers every block degree of the paper's Table 2, on small random
instances, in float32 and float64; non-homogeneous blocks are reported as such."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from scaleinv.audit import examples as ex
from scaleinv.audit import block_signature, degree_from_samples
from scaleinv.homogeneity import estimate_degree
from scaleinv.testing import assert_signature

SCALES = (1e-2, 1e-1, 1.0, 1e1, 1e2)
B, L, D = 2, 4, 8


def _x(seed=0, shape=(B, L, D), dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def _tokens():
    return jnp.asarray(np.random.default_rng(0).integers(0, 11, (B, L)), jnp.int32)


def _onehot():
    return jax.nn.one_hot(_tokens(), 11) * 0.7 + 0.03     # a soft one-hot (float) input


# (name, block, inputs, Table-2 signature)
CASES = [
    ("input", lambda: ex.InputEmbedding(11, L, D), lambda: (_tokens(),), "(0;1)"),
    ("adding a bias", lambda: ex.AddBias(), lambda: (_x(),), "(1;1)"),
    ("LayerNorm without affine", lambda: ex.layer_norm(False), lambda: (_x(),), "(x;0)"),
    ("LayerNorm with affine", lambda: ex.layer_norm(True), lambda: (_x(),), "(x;1)"),
    ("linear", lambda: ex.Linear(D), lambda: (_x(),), "(x;x+1)"),
    ("embedding", lambda: ex.Embedding(11, D), lambda: (_onehot(),), "(x;x+1)"),
    ("2-layer feed-forward", lambda: ex.FeedForward(16, D), lambda: (_x(),), "(0;2)"),
    ("SI attention", lambda: ex.SIAttention(D), lambda: (_x(1), _x(2), _x(3)), "(x,x,x;x+2)"),
    ("encoder layer", lambda: ex.EncoderLayer(D, 16), lambda: (_x(),), "(2;2)"),
]


def _init(block, inputs, dtype=jnp.float32):
    v = block.init(jax.random.PRNGKey(7), *inputs)
    return jax.tree.map(lambda a: a.astype(dtype), v)


@pytest.mark.parametrize("name,make,inputs,expected", CASES, ids=[c[0] for c in CASES])
def test_table2_signature_float32(name, make, inputs, expected):
    block, args = make(), inputs()
    sig = block_signature(block, _init(block, args), *args, scales=SCALES)
    assert sig.notation() == expected, (name, {x: (f.label(), f.slope, f.residual) for x, f in sig.fits.items()})
    for x in sig.valid:       # accepted degrees: relative residual within the float32 tolerance
        assert sig.fits[x].residual <= 1e-4 and abs(sig.fits[x].slope - sig.fits[x].degree) < 1e-4


@pytest.mark.parametrize("name,make,inputs,expected",
                         [c for c in CASES if c[0] in ("linear", "encoder layer")], ids=["linear", "encoder layer"])
def test_table2_signature_float64(name, make, inputs, expected):
    with jax.enable_x64(True):
        block = make()
        args = tuple(a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in inputs())
        sig = block_signature(block, _init(block, args, jnp.float64), *args, scales=SCALES)
        assert sig.notation() == expected
        for x in sig.valid:   # float64: default tolerance 1e-9, measured far below
            assert sig.fits[x].rtol == 1e-9 and sig.fits[x].residual < 1e-11, sig.fits[x]


def test_non_homogeneous_blocks_reported_not_homogeneous():
    x = _x()
    for block in (ex.SoftmaxAttention(D), ex.FeedForward(16, D, activation="gelu"),
                  ex.FeedForward(16, D, activation="softplus")):
        args = (x, x, x) if isinstance(block, ex.SIAttention) else (x,)
        sig = block_signature(block, _init(block, args), *args, scales=SCALES)
        assert sig.notation() == "not homogeneous", sig.notation()
        # the residual vs the best integer degree is far above the float32 tolerance, at every x
        assert min(f.residual for f in sig.fits.values()) > 1e-2


def test_softplus_function_not_given_a_misleading_degree():
    """softplus(c x) ~ c x for large c and ~ log 2 for small c: the log-log slope is some number
    between 0 and 1, but the residual says it is not homogeneous."""
    x = jnp.linspace(-1.0, 2.0, 7)
    f = lambda p: jax.nn.softplus(p["w"] * x)
    res = estimate_degree(f, {"w": jnp.ones(())}, scales=SCALES, rtol=1e-4)
    assert not res.homogeneous and 0.0 < res.degree < 1.0 and res.residual > 0.1
    ys = [f({"w": jnp.asarray(c)}) for c in SCALES]
    fit = degree_from_samples(SCALES, f({"w": jnp.ones(())}), ys, 1e-4)
    assert fit.status == "not homogeneous" and fit.label() == "✗"
    assert fit.slope == pytest.approx(res.degree, rel=1e-12) and fit.residual == pytest.approx(res.residual)


@given(k=st.integers(-2, 4), seed=st.integers(0, 100))
def test_degree_from_samples_matches_estimate_degree(k, seed):
    """The audit's batched fit is estimate_degree's fit: same slope, rounding and residual."""
    w = jnp.asarray(np.random.default_rng(seed).normal(size=(3,)), jnp.float32)
    f = lambda p: p["a"] ** k * w if k >= 0 else w / p["a"] ** (-k)
    p = {"a": jnp.asarray(1.3, jnp.float32)}
    ref = estimate_degree(f, p, scales=SCALES, rtol=1e-4)
    fit = degree_from_samples(SCALES, f(p), [f({"a": p["a"] * c}) for c in SCALES], 1e-4)
    assert ref.homogeneous and ref.rounded == k
    assert fit.homogeneous and fit.degree == k and fit.slope == pytest.approx(ref.degree, abs=1e-9)
    assert fit.residual == pytest.approx(ref.residual, abs=1e-12)


def test_assert_signature_helper_raises_on_wrong_claim():
    block, x = ex.Linear(D), _x()
    v = _init(block, (x,))
    assert_signature(block, v, x, expected="(x;x+1)", scales=SCALES)
    with pytest.raises(AssertionError, match=r"signature '\(x;x\+1\)' != expected '\(x;x\)'"):
        assert_signature(block, v, x, expected="(x;x)", scales=SCALES)


def test_signature_of_plain_function_and_group_mask():
    """A plain function f(params, h) works too; the mask restricts the group: with only W1 in
    the group, relu(h W1) W2 is (x;x+1) (W2 fixed), with both it is (x;x+2)."""
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(D, 6)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)}
    f = lambda p, h: jax.nn.relu(h @ p["w1"]) @ p["w2"]
    h = _x()
    assert block_signature(f, params, h, scales=SCALES).notation() == "(x;x+2)"
    sig = block_signature(f, params, h, mask={"w1": True, "w2": False}, scales=SCALES)
    assert sig.notation() == "(x;x+1)"
