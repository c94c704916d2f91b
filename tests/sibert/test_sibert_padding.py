"""Attention mask (padding) in BERT and SIBERT: pad ids cannot change real-token outputs, masked
keys get zero weight, all-padding rows give no NaN, SIBERT stays scale invariant with padding,
and ``attention_mask=None`` computes exactly what the unmasked model computes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaleinv.homogeneity import estimate_degree
from sibert.model import ENCODER, Encoder, MLMModel, ModelConfig, init_params, mlm_loss, si_attention_probs

V, L, B = 97, 16, 4
LENGTHS = (16, 11, 5, 1)


def _perturbed_params(cfg, seed):
    """init params with every leaf perturbed (LN scales/biases and biases are not trivial)."""
    params = init_params(cfg, jax.random.PRNGKey(seed), seq_len=L)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 100), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def _cfg(si):
    return ModelConfig(vocab_size=V, hidden=32, layers=2, heads=2, ffn=64, max_positions=L, scale_invariant=si)


def _mask():
    return jnp.asarray(np.arange(L)[None, :] < np.asarray(LENGTHS)[:, None], jnp.int32)


@functools.partial(jax.jit, static_argnums=0)
def _encode_jit(cfg, params, tokens, mask):
    return Encoder(cfg).apply({"params": params}, tokens, True, mask)[0]


def _encode(cfg, params, tokens, mask):
    return np.asarray(_encode_jit(cfg, params[ENCODER], tokens, mask))


@pytest.mark.parametrize("si", [False, True], ids=["bert", "sibert"])
def test_pad_ids_cannot_change_real_token_outputs(si):
    cfg = _cfg(si)
    params = _perturbed_params(cfg, 0)
    rng = np.random.default_rng(0)
    real = rng.integers(5, V, (B, L))
    mask = _mask()
    m = np.asarray(mask, bool)
    a = jnp.asarray(np.where(m, real, 0), jnp.int32)                       # [PAD] = 0 at pads
    b = jnp.asarray(np.where(m, real, rng.integers(5, V, (B, L))), jnp.int32)  # other ids at pads
    ha, hb = _encode(cfg, params, a, mask), _encode(cfg, params, b, mask)
    assert np.all(np.isfinite(ha))
    diff = np.max(np.abs(ha - hb)[m])
    assert diff <= 1e-6, diff
    # the check can fail: without the mask the same pad change moves the real tokens
    ua, ub = _encode(cfg, params, a, None), _encode(cfg, params, b, None)
    assert np.max(np.abs(ua - ub)[m]) > 1e-3
    # each padded row equals the same text run alone, unpadded
    for i, n in list(enumerate(LENGTHS))[1:3]:
        alone = _encode(cfg, params, a[i:i + 1, :n], None)[0]
        np.testing.assert_allclose(ha[i, :n], alone, atol=2e-5, rtol=0)


@pytest.mark.parametrize("si", [False, True], ids=["bert", "sibert"])
def test_mask_none_equals_all_ones_mask_bitwise(si):
    cfg = _cfg(si)
    params = _perturbed_params(cfg, 1)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, V, (B, L)), jnp.int32)
    h0 = _encode(cfg, params, tokens, None)
    h1 = _encode(cfg, params, tokens, jnp.ones((B, L), jnp.int32))
    np.testing.assert_array_equal(h0, h1)


def test_si_attention_masked_keys_zero_and_all_masked_row_zero():
    s = jnp.asarray(np.random.default_rng(2).normal(size=(1, 1, 3, 4)), jnp.float32) + 1.0   # mostly positive scores
    km = jnp.asarray([1, 1, 0, 0])[None, None, None, :]
    p = np.asarray(si_attention_probs(s, 1e-30, km))
    assert np.all(p[..., 2:] == 0.0)
    a = np.maximum(np.asarray(s)[..., :2], 0)
    np.testing.assert_allclose(p[..., :2], a / a.sum(-1, keepdims=True), rtol=1e-6)
    z = si_attention_probs(s, 1e-30, jnp.zeros_like(km))
    np.testing.assert_array_equal(np.asarray(z), np.zeros(s.shape))
    g = jax.grad(lambda x: jnp.sum(si_attention_probs(x, 1e-30, jnp.zeros_like(km)) ** 2))(s)
    assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("si", [False, True], ids=["bert", "sibert"])
def test_all_padding_row_is_finite(si):
    cfg = _cfg(si)
    params = _perturbed_params(cfg, 3)
    tokens = jnp.zeros((2, L), jnp.int32)
    mask = jnp.asarray([[0] * L, [1] * 3 + [0] * (L - 3)], jnp.int32)
    h = _encode(cfg, params, tokens, mask)
    assert np.all(np.isfinite(h))


def _padded_batch(seed):
    rng = np.random.default_rng(seed)
    mask = np.asarray(_mask())
    tokens = np.where(mask == 1, rng.integers(5, V, (B, L)), 0)
    pos = np.stack([np.sort(rng.choice(n, size=3, replace=n < 3)) for n in LENGTHS])
    return {"tokens": jnp.asarray(tokens, jnp.int32), "attention_mask": jnp.asarray(mask, jnp.int32),
            "mlm_positions": jnp.asarray(pos, jnp.int32),
            "mlm_labels": jnp.asarray(rng.integers(5, V, pos.shape), jnp.int32),
            "mlm_weights": jnp.ones(pos.shape, jnp.float32)}


def test_sibert_scale_invariant_with_padding():
    cfg = _cfg(True)
    params = init_params(cfg, jax.random.PRNGKey(4), seq_len=L)
    batch = _padded_batch(4)
    model = MLMModel(cfg)
    loss = jax.jit(lambda p: mlm_loss(model, p, batch)[0])
    mask = {k: jax.tree.map(lambda _: k == ENCODER, v) for k, v in params.items()}
    res = estimate_degree(loss, params, mask=mask, scales=tuple(np.logspace(-3, 3, 7)), rtol=1e-5)
    assert res.rounded == 0 and abs(res.degree) < 1e-5 and res.homogeneous, res
    # and the mask matters for the loss (the padded batch is not trivially the unpadded one)
    nomask = {k: v for k, v in batch.items() if k != "attention_mask"}
    assert abs(float(mlm_loss(model, params, nomask)[0]) - float(loss(params))) > 1e-5


def test_encode_examples_and_padded_masking():
    from sibert.data import CLS_ID, NUM_SPECIAL, PAD_ID, SEP_ID, encode_examples, mask_padded_rows, train_tokenizer
    texts = ["the cat sat on the mat", "a dog", "the horse and the cat and the dog ran far away today"] * 3
    tok = train_tokenizer(texts, 60)
    tokens, am = encode_examples(tok, texts, 12)
    for i, t in enumerate(texts):
        ids = tok.encode(t, add_special_tokens=False).ids[:10]
        n = len(ids) + 2
        assert tokens[i, :n].tolist() == [CLS_ID, *ids, SEP_ID] and np.all(tokens[i, n:] == PAD_ID)
        assert am[i].tolist() == [1] * n + [0] * (12 - n)
    b = mask_padded_rows(tokens, am, np.random.default_rng(0), 60, 0.15)
    w = b["mlm_weights"] > 0
    picked = np.take_along_axis(tokens, b["mlm_positions"], 1)[w]
    assert np.all(picked >= NUM_SPECIAL)                           # never [PAD]/[CLS]/[SEP]
    assert np.all(np.take_along_axis(am, b["mlm_positions"], 1)[w] == 1)
    n_real = ((am > 0) & (tokens >= NUM_SPECIAL)).sum(1)
    np.testing.assert_array_equal(w.sum(1), np.maximum(1, np.round(0.15 * n_real)))
    assert np.array_equal(b["attention_mask"], am) and np.all(b["tokens"][am == 0] == PAD_ID)
