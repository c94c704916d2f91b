"""The audit's dtype-dependent acceptance tolerance (issue 27: the float32 rtol was never asserted). Pinned
values, and the behaviour at both sides of the float32 threshold through degree_from_samples and through a
float32 block signature (the default used when no rtol is given)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaleinv.audit import block_signature, default_rtol, degree_from_samples


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-4), (jnp.bfloat16, 5e-2),
                                        (np.float16, 5e-2)])
def test_default_rtol_per_dtype(dtype, rtol):
    assert default_rtol(dtype) == rtol


def test_float32_threshold_accepts_below_and_rejects_above():
    scales = [0.5, 2.0, 4.0]
    y1 = np.linspace(1.0, 2.0, 16).astype(np.float32)
    tol = default_rtol(np.float32)

    def samples(rel):      # degree 2, every sample off by the relative residual ``rel``
        return [(c**2 * y1 * (1 + rel)).astype(np.float32) for c in scales]

    ok = degree_from_samples(scales, y1, samples(3e-5), tol)
    assert ok.status == "homogeneous" and ok.degree == 2 and ok.rtol == 1e-4
    bad = degree_from_samples(scales, y1, samples(3e-4), tol)
    assert bad.status == "not homogeneous" and bad.degree is None
    # the same 3e-5 residual is rejected at the float64 tolerance
    assert degree_from_samples(scales, y1, samples(3e-5), default_rtol(np.float64)).status == "not homogeneous"


def test_float32_block_signature_uses_the_float32_default():
    block = nn.Dense(4, use_bias=False)
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3)
    params = block.init(jax.random.PRNGKey(0), x)
    sig = block_signature(block, params, x, scales=(0.5, 2.0, 4.0))
    assert sig.fits and all(f.rtol == 1e-4 for f in sig.fits.values()), sig.fits
    assert all(f.residual <= 1e-4 for x_, f in sig.fits.items() if x_ in sig.valid)
