"""Options that must change the result when given (issue 27: an option accepted but not honoured passes
every test that does not use it). Each test here fails for a one-line bug that drops the option."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaleinv.corrected_wd import adamc, sgdc


def _params():
    return {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5, 0.25])}


def _one_step(opt, grads):
    p = _params()
    u, _ = opt.update(grads, opt.init(p), p)
    return optax.apply_updates(p, u)


@pytest.mark.parametrize("factory", ["sgdc", "adamc"])
def test_corrected_wd_mask_is_honoured(factory):
    """mask={'w': True, 'b': False}: only w decays. Zero gradients (Adam's update of a zero gradient is 0), so the
    step is the decay alone: w <- w (1 - eta_0 lambda_0), lambda_0 = lambda eta_0/eta_max; b unchanged exactly."""
    lr = optax.linear_schedule(0.1, 0.0, 100)      # eta_0 = eta_max = 0.1 -> lambda_0 = 0.5
    wd, mask = 0.5, {"w": True, "b": False}
    make = {"sgdc": lambda m: sgdc(lr, wd, mask=m), "adamc": lambda m: adamc(lr, wd, eps=1e-8, mask=m)}[factory]
    zeros = jax.tree.map(jnp.zeros_like, _params())
    masked, unmasked = _one_step(make(mask), zeros), _one_step(make(None), zeros)
    p = _params()
    np.testing.assert_allclose(masked["w"], p["w"] * (1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(masked["b"], p["b"])                        # the mask's False leaf: no decay
    np.testing.assert_allclose(unmasked["b"], p["b"] * (1 - 0.1 * 0.5), rtol=1e-6)   # no mask: every leaf decays


@pytest.mark.parametrize("factory", ["sgdc", "adamc"])
def test_corrected_wd_mask_as_a_function(factory):
    """A callable mask (optax's convention: params -> bool tree) works the same as the tree."""
    lr = optax.constant_schedule(0.1)
    fmask = lambda p: {"w": False, "b": True}  # noqa: E731
    opt = sgdc(lr, 0.5, mask=fmask) if factory == "sgdc" else adamc(lr, 0.5, mask=fmask)
    out = _one_step(opt, jax.tree.map(jnp.zeros_like, _params()))
    np.testing.assert_array_equal(out["w"], _params()["w"])
    np.testing.assert_allclose(out["b"], _params()["b"] * 0.95, rtol=1e-6)
