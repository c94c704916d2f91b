"""SIBERT's MLM loss is 0-homogeneous (scale invariant) in the encoder parameters; BERT's is not."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaleinv.homogeneity import estimate_degree, euler_residual
from sibert.model import ENCODER, MLMModel, ModelConfig, init_params, mlm_loss, si_attention_probs

SCALES = tuple(np.logspace(-3, 3, 7))


def _setup(si: bool, seed=0):
    cfg = ModelConfig(vocab_size=97, hidden=32, layers=2, heads=2, ffn=64, max_positions=32,
                      scale_invariant=si)
    params = init_params(cfg, jax.random.PRNGKey(seed), seq_len=32)
    rng = np.random.default_rng(seed)
    batch = {
        "tokens": jnp.asarray(rng.integers(0, 97, (4, 32)), jnp.int32),
        "mlm_positions": jnp.asarray(rng.integers(0, 32, (4, 5)), jnp.int32),
        "mlm_labels": jnp.asarray(rng.integers(0, 97, (4, 5)), jnp.int32),
        "mlm_weights": jnp.ones((4, 5), jnp.float32),
    }
    model = MLMModel(cfg)
    mask = {k: jax.tree.map(lambda _: k == ENCODER, v) for k, v in params.items()}
    loss = jax.jit(lambda p: mlm_loss(model, p, batch)[0])
    return params, mask, loss


@pytest.mark.parametrize("seed", [0, 1])
def test_sibert_loss_is_scale_invariant_in_encoder(seed):
    params, mask, loss = _setup(True, seed)
    res = estimate_degree(loss, params, mask=mask, scales=SCALES, rtol=1e-5)
    assert res.rounded == 0 and abs(res.degree) < 1e-5, res
    assert res.homogeneous, res  # max_c |L(c x) - L(x)| / L(x) <= 1e-5 for c in [1e-3, 1e3]
    # Euler: <x_enc, grad_enc L> = 0 * L (relative to ||x|| ||g||, float32 rounding)
    assert euler_residual(loss, params, k=0.0, mask=mask) < 1e-3


def test_sibert_loss_not_invariant_in_head():
    params, mask, loss = _setup(True)
    head_mask = jax.tree.map(lambda m: not m, mask)
    res = estimate_degree(loss, params, mask=head_mask, scales=SCALES, rtol=1e-5)
    assert not res.homogeneous and res.residual > 1e-2, res


def test_bert_loss_not_scale_invariant_in_encoder():
    params, mask, loss = _setup(False)
    res = estimate_degree(loss, params, mask=mask, scales=SCALES, rtol=1e-5)
    assert not (res.homogeneous and res.rounded == 0), res
    assert res.residual > 1e-2, res


def test_si_attention_nonpositive_row_gives_zeros_not_nan():
    s = jnp.array([[[-1.0, -2.0, 0.0], [1.0, 3.0, -1.0]]])
    p = si_attention_probs(s, 1e-30)
    assert bool(jnp.all(jnp.isfinite(p)))
    np.testing.assert_array_equal(np.asarray(p[0, 0]), np.zeros(3))
    np.testing.assert_allclose(np.asarray(p[0, 1]), [0.25, 0.75, 0.0], rtol=1e-6)
    # gradient through the degenerate row is finite too
    g = jax.grad(lambda x: jnp.sum(si_attention_probs(x, 1e-30) ** 2))(s)
    assert bool(jnp.all(jnp.isfinite(g)))
    # 0-homogeneous in the scores away from the degenerate row
    for c in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(np.asarray(si_attention_probs(c * s, 1e-30)[0, 1]),
                                   np.asarray(p[0, 1]), rtol=1e-5)


def test_sibert_model_has_no_forbidden_bias_or_affine():
    params, _, _ = _setup(True)
    layer = params[ENCODER]["layer_0"]
    assert "bias" not in layer["attention"]["out"] and "bias" not in layer["ffn"]["fc2"]
    assert "bias" in layer["attention"]["query"] and "bias" in layer["ffn"]["fc1"]
    assert "ln_attn" not in layer or not layer.get("ln_attn")  # non-affine LN has no params
    assert "logit_scale" in params["head"]


def test_bert_hidden_act_is_exact_erf_gelu_by_default():
    import math

    import jax.numpy as jnp

    from sibert.model import ModelConfig, activation

    x = jnp.linspace(-4.0, 4.0, 81)
    exact = jnp.asarray([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.tolist()])
    bert = ModelConfig(scale_invariant=False)
    assert bert.hidden_act == "gelu"
    assert float(jnp.max(jnp.abs(activation(bert)(x) - exact))) < 1e-6
    tanh = activation(ModelConfig(scale_invariant=False, hidden_act="gelu_new"))(x)
    assert float(jnp.max(jnp.abs(tanh - exact))) > 1e-4      # the two GELUs really differ
    si = activation(ModelConfig(scale_invariant=True, hidden_act="gelu"))
    assert float(jnp.max(jnp.abs(si(x) - jnp.maximum(x, 0)))) == 0.0  # SIBERT: ReLU regardless
