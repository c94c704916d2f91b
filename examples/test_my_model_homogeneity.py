"""Example: property-test the homogeneity of YOUR flax model with ``scaleinv.testing``.

Copy this file into your project's tests, replace ``MyModel`` / ``make_model`` with your model,
and run ``pytest test_my_model_homogeneity.py``. It checks, at random parameter points drawn by
hypothesis:

* the loss is scale invariant (0-homogeneous) in the "body" parameters: L(c x) = L(x),
  Euler's identity <x, grad L> = 0, and grad L(c x) = grad L(x) / c;
* a hidden block has the Table-2 signature it is designed for, e.g. PreNorm residual (2;2);
* the homogeneity audit finds no break and reports degree 0 for the loss.

The model: tokens -> E[tok] (1-homogeneous) -> bias-free W_in (2) -> a PreNorm ReLU residual
block h + relu(LN(h) W1 + b1) W2 (2;2) -> non-affine LN (0) -> a classifier "head" (its own
group, not scale invariant, e.g. trained by another optimizer).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings

from scaleinv.audit import audit
from scaleinv.testing import (assert_homogeneous, assert_scale_invariant_loss, assert_signature,
                              params_like, scales)

EPS = 1e-30  # LayerNorm epsilon: must be negligible against the variance at every tested scale


def ln():
    return nn.LayerNorm(epsilon=EPS, use_bias=False, use_scale=False, use_fast_variance=False)


class Block(nn.Module):
    """PreNorm residual block h + relu(LN(h) W1 + b1) W2: (2;2)."""
    dim: int = 16

    @nn.compact
    def __call__(self, h):
        y = nn.relu(nn.Dense(4 * self.dim, name="fc1")(ln()(h)))      # bias on a 1-homogeneous tensor: ok
        return h + nn.Dense(self.dim, use_bias=False, name="fc2")(y)   # no bias on the 2-homogeneous one


class Body(nn.Module):
    vocab: int = 32
    dim: int = 16

    @nn.compact
    def __call__(self, tokens):
        E = self.param("embedding", nn.initializers.normal(0.02), (self.vocab, self.dim))
        h = nn.Dense(self.dim, use_bias=False, name="w_in")(E[tokens])
        h = Block(self.dim, name="block")(h)
        return ln()(h)


class MyModel(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(5, name="head")(Body(name="body")(tokens))


MODEL = MyModel()
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 32, (2, 8)), jnp.int32)
LABELS = jnp.asarray(np.random.default_rng(1).integers(0, 5, (2, 8)), jnp.int32)
PARAMS = MODEL.init(jax.random.PRNGKey(0), TOKENS)["params"]
BODY = {k: jax.tree.map(lambda _: k == "body", v) for k, v in PARAMS.items()}   # group mask


def loss_fn(params):
    logits = MODEL.apply({"params": params}, TOKENS)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), LABELS[..., None], -1))


LOSS = jax.jit(loss_fn)


@settings(deadline=None, max_examples=5)
@given(p=params_like(PARAMS))
def test_loss_is_scale_invariant_in_body(p):
    assert_scale_invariant_loss(LOSS, p, mask=BODY)


@settings(deadline=None, max_examples=5)
@given(p=params_like(PARAMS), c=scales())
def test_loss_value_unchanged_by_scaling_body(p, c):
    scaled = {k: (jax.tree.map(lambda a: a * c, v) if k == "body" else v) for k, v in p.items()}
    np.testing.assert_allclose(float(LOSS(scaled)), float(LOSS(p)), rtol=1e-4)


def test_block_signature_is_2_2():
    h = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 16))
    variables = Block().init(jax.random.PRNGKey(2), h)
    assert_signature(Block(), variables, h, expected="(2;2)")


def test_body_output_degree_per_group():
    body = Body()
    variables = {"params": PARAMS["body"]}
    out = lambda v: body.apply(v, TOKENS)
    assert_homogeneous(out, variables, 0)                     # non-affine LN at the end: 0-homogeneous


def test_audit_finds_no_break():
    report = audit(lambda p, b: loss_fn(p), PARAMS, None, target_group="body", target_degree=0,
                   expect={r"body/block": "(2;2)"}, input_degrees=(0, 2), scales=(0.01, 1.0, 100.0))
    assert report.first_break is None, report.first_break_explanation
    assert report.target_met
