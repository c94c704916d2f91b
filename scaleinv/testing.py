"""Property-testing helpers for homogeneity: hypothesis strategies and assertions.

Import them in your own test suite (``hypothesis`` and ``pytest`` are test-time dependencies:
``pip install scaleinv[dev]``)::

    from hypothesis import given, settings
    from scaleinv.testing import assert_scale_invariant_loss, params_like, scales

    @settings(deadline=None, max_examples=10)
    @given(p=params_like(PARAMS))
    def test_loss_is_scale_invariant(p):
        assert_scale_invariant_loss(loss_fn, p)

See ``examples/test_my_model_homogeneity.py`` for a complete, copyable file.

The math being asserted (f a function of a parameter pytree x, S a group of leaves):

* :func:`assert_homogeneous`: f(c x_S, x_rest) = c^k f(x) for every c in ``scales``
  (relative residual max_c ||f(c x) - c^k f(x)|| / ||c^k f(x)|| <= rtol) and the log-log fitted
  degree rounds to k (:func:`scaleinv.homogeneity.estimate_degree`).
* :func:`assert_euler_identity`: <x_S, grad_S f(x)> = k f(x) (Euler's theorem, talk "Ingredient 1"),
  relative to max(|f|, |k f|, ||x_S|| ||grad_S f||).
* :func:`assert_scale_invariant_loss`: k = 0 for the value, Euler's identity <x_S, grad_S L> = 0,
  and grad_S L is (-1)-homogeneous (talk: "f k-homo <=> grad f (k-1)-homo").
* :func:`assert_signature`: a block's Table-2 "(input degree; output degree)" signature
  (:func:`scaleinv.audit.block_signature`), e.g. "(x;x+1)" for a bias-free linear layer.

Default tolerances follow the dtype: rtol 1e-4 in float32, 1e-9 in float64 for values; the
Euler/gradient checks use 1e-3 / 1e-7 (they involve a gradient, i.e. one more rounding chain).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from scaleinv.homogeneity import (DEFAULT_SCALES, estimate_degree, euler_residual,
                                  gradient_homogeneity_residual)

__all__ = ["scales", "scale_lists", "param_trees", "params_like", "group_masks", "degrees",
           "assert_homogeneous", "assert_group_degrees", "assert_euler_identity", "assert_scale_invariant_loss",
           "assert_signature", "value_rtol", "grad_rtol"]


# ------------------------------------------------------------------------------ strategies
def scales(min_exponent: float = -2.0, max_exponent: float = 2.0) -> st.SearchStrategy[float]:
    """Positive scale factors c = 10**e, e uniform in [min_exponent, max_exponent]."""
    if not min_exponent < max_exponent:
        raise ValueError(f"need min_exponent < max_exponent, got {min_exponent}, {max_exponent}")
    return st.floats(min_exponent, max_exponent, allow_nan=False).map(lambda e: float(10.0 ** e))


def scale_lists(min_size: int = 3, max_size: int = 7, min_exponent: float = -2.0,
                max_exponent: float = 2.0) -> st.SearchStrategy[tuple]:
    """Sorted tuples of distinct scales spanning orders of magnitude (for ``scales=``)."""
    return st.lists(scales(min_exponent, max_exponent), min_size=min_size, max_size=max_size,
                    unique=True).map(lambda cs: tuple(sorted(cs)))


def degrees(min_value: int = -2, max_value: int = 4) -> st.SearchStrategy[int]:
    """Integer homogeneity degrees."""
    return st.integers(min_value, max_value)


def _seeds():
    return st.integers(0, 2**31 - 1)


def param_trees(max_leaves: int = 4, max_dim: int = 5, dtype=jnp.float32,
                std: Union[float, st.SearchStrategy[float], None] = None) -> st.SearchStrategy[dict]:
    """Random parameter pytrees {"layer_i": {"w_j": array}} with 1..max_leaves leaves of rank 1-2.

    Leaves are standard normal times ``std`` (default: drawn log-uniformly in [1e-2, 1e2], so
    tests see parameter norms across orders of magnitude). Built from a hypothesis-drawn seed
    (numpy generator), which keeps shrinking cheap."""
    std_st = scales() if std is None else (std if isinstance(std, st.SearchStrategy) else st.just(float(std)))

    @st.composite
    def build(draw):
        n = draw(st.integers(1, max_leaves))
        shapes = [tuple(draw(st.lists(st.integers(1, max_dim), min_size=1, max_size=2))) for _ in range(n)]
        rng = np.random.default_rng(draw(_seeds()))
        s = draw(std_st)
        tree = {}
        for i, shape in enumerate(shapes):
            tree.setdefault(f"layer_{i // 2}", {})[f"w_{i % 2}"] = jnp.asarray(
                s * rng.standard_normal(shape), dtype)
        return tree

    return build()


def params_like(params, std: Union[float, st.SearchStrategy[float], None] = None,
                relative: bool = False) -> st.SearchStrategy:
    """Random pytrees with the structure, shapes and dtypes of ``params``.

    ``relative=False``: leaves N(0, std^2) with std drawn log-uniformly in [1e-2, 1e2] unless
    given. ``relative=True``: params + std * N(0, 1) * rms(leaf) (a random point near params; std
    default 0.1), keeping e.g. LayerNorm scales near 1."""
    leaves, treedef = jax.tree.flatten(params)
    if std is None:
        std_st = st.just(0.1) if relative else scales()
    else:
        std_st = std if isinstance(std, st.SearchStrategy) else st.just(float(std))

    @st.composite
    def build(draw):
        rng = np.random.default_rng(draw(_seeds()))
        s = draw(std_st)
        out = []
        for leaf in leaves:
            a = np.asarray(leaf)
            noise = rng.standard_normal(a.shape)
            if relative:
                rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) or 1.0
                new = a + s * rms * noise
            else:
                new = s * noise
            out.append(jnp.asarray(new, a.dtype))
        return jax.tree.unflatten(treedef, out)

    return build()


def group_masks(params, min_selected: int = 1) -> st.SearchStrategy:
    """Random bool masks over the leaves of ``params`` selecting at least ``min_selected`` leaves."""
    n = len(jax.tree.leaves(params))
    if not 1 <= min_selected <= n:
        raise ValueError(f"min_selected must be in [1, {n}], got {min_selected}")
    treedef = jax.tree.structure(params)
    return (st.lists(st.booleans(), min_size=n, max_size=n)
            .filter(lambda bs: sum(bs) >= min_selected)
            .map(lambda bs: jax.tree.unflatten(treedef, list(bs))))


# ------------------------------------------------------------------------------ assertions
def _dtype(params):
    leaves = jax.tree.leaves(params)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def value_rtol(params) -> float:
    """Default value tolerance for the parameters' dtype: 1e-4 (float32), 1e-9 (float64)."""
    return 1e-9 if np.dtype(_dtype(params)).itemsize >= 8 else 1e-4


def grad_rtol(params) -> float:
    """Default tolerance for Euler / gradient checks: 1e-3 (float32), 1e-7 (float64)."""
    return 1e-7 if np.dtype(_dtype(params)).itemsize >= 8 else 1e-3


def _groups(params, groups) -> Mapping[str, Any]:
    if groups is None:
        return {"all": None}
    if isinstance(groups, Mapping):
        return dict(groups)
    if isinstance(groups, Sequence) and not isinstance(groups, str):
        return {f"group_{i}": m for i, m in enumerate(groups)}
    raise TypeError(f"groups must be None, a dict name -> mask or a list of masks, got {type(groups).__name__}")


def assert_group_degrees(groups: Mapping[str, Any], degree: Union[int, Mapping[str, int]],
                         estimate: Callable[[Any], Any], rtol: float) -> None:
    """The group loop of :func:`assert_homogeneous` (shared with ``scaleinv.torch.testing``):
    ``estimate(spec)`` -> :class:`~scaleinv.homogeneity.HomogeneityResult` for each group spec;
    ValueError when ``degree`` (a dict) misses a group, AssertionError naming every group whose
    fitted degree is not ``degree`` within ``rtol`` (or whose degree is not identifiable)."""
    if isinstance(degree, Mapping):
        missing = set(groups) - set(degree)
        if missing:
            raise ValueError(f"degree has no entry for group(s) {sorted(missing)}; groups: {sorted(groups)}")
    failures = []
    for name, spec in groups.items():
        k = degree[name] if isinstance(degree, Mapping) else degree
        try:
            res = estimate(spec)
        except ValueError as e:
            failures.append(f"group {name!r}: {e}")
            continue
        if not (res.homogeneous and res.rounded == k):
            failures.append(f"group {name!r}: expected degree {k}, fitted slope {res.degree:.4g} "
                            f"(rounded {res.rounded}), residual vs c^{res.rounded}: {res.residual:.3g} "
                            f"(rtol {rtol:g}), log-log fit rms {res.fit_residual:.3g}")
    if failures:
        raise AssertionError("not homogeneous as asserted:\n  " + "\n  ".join(failures))


def assert_homogeneous(fn: Callable[[Any], Any], params, degree: Union[int, Mapping[str, int]],
                       groups=None, scales: Sequence[float] = DEFAULT_SCALES,
                       rtol: Optional[float] = None) -> None:
    """Assert fn(c x_S, x_rest) = c^degree fn(x) for each group S (see module docstring).

    groups: None (all leaves jointly), a dict name -> bool mask pytree, or a list of masks;
    degree: one int for all groups or a dict name -> int. Raises AssertionError naming the group,
    the fitted slope and the residual."""
    rtol = value_rtol(params) if rtol is None else rtol
    gs = _groups(params, groups)
    assert_group_degrees(gs, degree, lambda mask: estimate_degree(fn, params, mask=mask, scales=scales, rtol=rtol),
                         rtol)


def assert_euler_identity(fn: Callable[[Any], jax.Array], params, degree: float, mask=None,
                          rtol: Optional[float] = None) -> None:
    """Assert Euler's identity <x_S, grad_S f(x)> = degree * f(x) for scalar fn (relative residual
    of :func:`scaleinv.homogeneity.euler_residual` <= rtol)."""
    rtol = grad_rtol(params) if rtol is None else rtol
    r = euler_residual(fn, params, degree, mask=mask)
    if not r <= rtol:
        raise AssertionError(f"Euler identity <x, grad f> = {degree} f fails: relative residual {r:.3g} > {rtol:g}")


def assert_scale_invariant_loss(loss_fn: Callable[[Any], jax.Array], params, mask=None,
                                scales: Sequence[float] = DEFAULT_SCALES, rtol: Optional[float] = None,
                                grad_tol: Optional[float] = None) -> None:
    """Assert L(c x_S, x_rest) = L(x) (0-homogeneous), <x_S, grad_S L> = 0 and
    grad_S L(c x) = grad_S L(x) / c for all c in ``scales``."""
    assert_homogeneous(loss_fn, params, 0, groups=None if mask is None else {"group": mask},
                       scales=scales, rtol=rtol)
    gt = grad_rtol(params) if grad_tol is None else grad_tol
    assert_euler_identity(loss_fn, params, 0.0, mask=mask, rtol=gt)
    r = gradient_homogeneity_residual(loss_fn, params, 0.0, mask=mask, scales=scales)
    if not r <= gt:
        raise AssertionError(f"gradient is not (-1)-homogeneous: max_c ||g(cx) - g(x)/c|| / ||g(x)/c|| = "
                             f"{r:.3g} > {gt:g}")


def assert_signature(block, params, *inputs, expected: str, mask=None,
                     input_degrees=(0, 1, 2, 3), scales: Sequence[float] = DEFAULT_SCALES,
                     rtol: Optional[float] = None, **kwargs) -> None:
    """Assert a block's Table-2 signature, e.g. ``expected="(x;x+1)"`` for a bias-free Dense.

    ``block``/``params``/``inputs`` as in :func:`scaleinv.audit.block_signature`."""
    from scaleinv.audit import block_signature

    sig = block_signature(block, params, *inputs, mask=mask, input_degrees=input_degrees, scales=scales,
                          rtol=rtol, **kwargs)
    got = sig.notation()
    if got != expected:
        detail = ", ".join(f"x={x}: {f.label()} (slope {f.slope:.3g}, residual {f.residual:.2g})"
                           for x, f in sig.fits.items())
        raise AssertionError(f"signature {got!r} != expected {expected!r} ({detail})")
