"""Homogeneity of functions of parameter pytrees.

f is k-homogeneous in the parameter group S  <=>  f(c x_S, x_rest) = c^k f(x)  for all c > 0
(talk, "Our Hypothesis: k-homogeneity in Architecture"). Consequences checked here:

* Euler's theorem: <x_S, grad_S f(x)> = k f(x)                       (talk, "Ingredient 1")
* grad_S f is (k-1)-homogeneous in S: grad_S f(c x_S) = c^(k-1) grad_S f(x).

The degree is *estimated* from a log-log fit of ||f(c x)|| against c over several orders of
magnitude, and accepted only if the fit residual is small: a function such as softplus gets
``homogeneous=False`` rather than a misleading degree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "HomogeneityResult",
    "scale_params",
    "estimate_degree",
    "euler_residual",
    "gradient_homogeneity_residual",
    "DEFAULT_SCALES",
    "fit_log_log",
    "result_from_outputs",
]

DEFAULT_SCALES = tuple(np.logspace(-2, 2, 9))


@dataclass
class HomogeneityResult:
    """Outcome of :func:`estimate_degree`.

    degree: least-squares slope of log||f(c x)|| vs log c; rounded: nearest integer;
    residual: max over c of ||f(c x) - c^rounded f(x)|| / ||c^rounded f(x)|| (relative);
    fit_residual: rms residual of the log-log fit; homogeneous: residual <= rtol.
    """

    degree: float
    rounded: int
    residual: float
    fit_residual: float
    homogeneous: bool
    scales: tuple

    def as_dict(self):
        d = asdict(self)
        d["scales"] = [float(c) for c in self.scales]
        return d


def _full_mask(params):
    return jax.tree.map(lambda _: True, params)


def scale_params(params, c, mask=None):
    """Return params with the leaves selected by ``mask`` (bool pytree, default all) times c."""
    mask = _full_mask(params) if mask is None else mask
    return jax.tree.map(lambda x, m: x * jnp.asarray(c, x.dtype) if m else x, params, mask)


def _flat_norm(y) -> float:
    leaves = [np.asarray(l, dtype=np.float64).ravel() for l in jax.tree.leaves(y)]
    return float(np.linalg.norm(np.concatenate(leaves))) if leaves else 0.0


def _flat(y) -> np.ndarray:
    return np.concatenate([np.asarray(l, dtype=np.float64).ravel() for l in jax.tree.leaves(y)])


def estimate_degree(fn: Callable[[Any], Any], params, mask=None,
                    scales: Sequence[float] = DEFAULT_SCALES, rtol: float = 1e-4) -> HomogeneityResult:
    """Estimate the homogeneity degree of ``fn`` (pytree -> array/pytree) in the group ``mask``.

    For each c in ``scales`` evaluates y_c = fn(scale_params(params, c, mask)), fits
    log||y_c|| = k log c + b, rounds k to the nearest integer K and reports the relative
    residual max_c ||y_c - c^K y_1|| / ||c^K y_1||. ``homogeneous`` is residual <= rtol
    (use ~1e-4 in float32, ~1e-9 in float64).
    """
    scales = tuple(float(c) for c in scales)
    if len(scales) < 2:
        raise ValueError(f"scales needs at least 2 values, got {scales}")
    if any(c <= 0 for c in scales):
        raise ValueError(f"scales must be > 0, got {scales}")
    y1 = _flat(fn(params))
    ys = [_flat(fn(scale_params(params, c, mask))) for c in scales]
    return result_from_outputs(scales, y1, ys, rtol)


def result_from_outputs(scales: Sequence[float], y1: np.ndarray, ys: Sequence[np.ndarray],
                        rtol: float) -> HomogeneityResult:
    """The degree fit of flattened outputs ``y1 = f(x)`` and ``ys[i] = f(scales[i] x)`` (shared by
    the JAX and the torch estimators): ``ValueError`` when f(x) is zero or not finite (the degree
    is not identifiable there) or f(c x) is not finite at some scale."""
    n1 = float(np.linalg.norm(y1))
    if not np.isfinite(n1) or n1 == 0.0:
        raise ValueError("fn(params) is zero or not finite: the degree is not identifiable there; "
                         "evaluate at another point")
    bad = [c for c, y in zip(scales, ys) if not np.all(np.isfinite(y))]
    if bad:
        raise ValueError(f"fn(c x) is not finite at scales c = {bad}: choose scales inside the range "
                         "where fn is finite")
    k, K, rel, fit_res = fit_log_log(scales, y1, ys)
    return HomogeneityResult(degree=k, rounded=K, residual=rel, fit_residual=fit_res,
                             homogeneous=bool(rel <= rtol), scales=tuple(scales))


def fit_log_log(scales: Sequence[float], y1: np.ndarray, ys: Sequence[np.ndarray]):
    """The degree fit shared by :func:`estimate_degree` and :mod:`scaleinv.audit`.

    y1 = f(x), ys[i] = f(c_i x) as flat float64 arrays (finite, y1 != 0). Returns
    (k, K, rel, fit_res): k the least-squares slope of log||y_c|| vs log c, K = round(k),
    rel = max_c ||y_c - c^K y1|| / ||c^K y1||, fit_res the rms residual of the log-log fit.
    """
    n1 = float(np.linalg.norm(y1))
    logc = np.log(np.asarray(scales, np.float64))
    logn = np.log(np.maximum([np.linalg.norm(y) for y in ys], np.finfo(np.float64).tiny))
    A = np.stack([logc, np.ones_like(logc)], axis=1)
    coef, *_ = np.linalg.lstsq(A, logn, rcond=None)
    k = float(coef[0])
    fit_res = float(np.sqrt(np.mean((A @ coef - logn) ** 2)))
    K = int(np.round(k))
    rel = max(float(np.linalg.norm(y - c**K * y1) / (c**K * n1)) for c, y in zip(scales, ys))
    return k, K, rel, fit_res


def _group_inner(a, b, mask):
    terms = jax.tree.map(lambda u, v, m: jnp.vdot(u, v) if m else jnp.zeros((), jnp.result_type(u)),
                         a, b, mask)
    return sum(jax.tree.leaves(terms))


def euler_residual(loss_fn: Callable[[Any], jax.Array], params, k: float, mask=None) -> float:
    """Relative Euler residual |<x_S, grad_S L(x)> - k L(x)| / max(|L|, |k L|, ||x_S|| ||grad_S L||).

    Zero (to rounding) iff Euler's identity holds at ``params`` for degree k in group S.
    """
    mask = _full_mask(params) if mask is None else mask
    val, grads = jax.value_and_grad(loss_fn)(params)
    inner = float(_group_inner(params, grads, mask))
    gx = _flat_norm(jax.tree.map(lambda g, m: g if m else jnp.zeros_like(g), grads, mask))
    xx = _flat_norm(jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), params, mask))
    denom = max(abs(float(val)), abs(k * float(val)), xx * gx, np.finfo(np.float64).tiny)
    return abs(inner - k * float(val)) / denom


def gradient_homogeneity_residual(loss_fn: Callable[[Any], jax.Array], params, k: float, mask=None,
                                  scales: Sequence[float] = DEFAULT_SCALES) -> float:
    """max_c ||grad_S L(c x_S) - c^(k-1) grad_S L(x)|| / ||c^(k-1) grad_S L(x)|| over ``scales``:
    zero iff grad_S L is (k-1)-homogeneous in S (talk, "Lemma: f k-homo <=> grad^l f (k-l)-homo")."""
    mask = _full_mask(params) if mask is None else mask
    grad_fn = jax.grad(loss_fn)

    def sel(g):
        return _flat(jax.tree.map(lambda u, m: u if m else jnp.zeros_like(u), g, mask))

    g1 = sel(grad_fn(params))
    n1 = np.linalg.norm(g1)
    if n1 == 0.0 or not np.isfinite(n1):
        raise ValueError("gradient is zero or not finite at params: pick another point")
    worst = 0.0
    for c in scales:
        gc = sel(grad_fn(scale_params(params, c, mask)))
        worst = max(worst, float(np.linalg.norm(gc - c ** (k - 1) * g1) / (c ** (k - 1) * n1)))
    return worst
