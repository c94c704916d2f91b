"""The talk's toy problems, as plain JAX functions of a parameter pytree.

Every loss has the signature ``loss(params, key) -> scalar``; deterministic losses ignore
``key``, stochastic ones draw the "batch" gamma from it (L_gamma in the talk).

* Ex 1 (talk, "Our Hypothesis", Ex 1): L(x_1..x_2k) = L~(x_1 ... x_2k) with L~ a 1-D logistic
  loss on non-separable data. With points z = (1, 1, 1, -1), labels +1:
      L~(X) = (1/4) sum_i ln(1 + exp(-z_i X)),  minimiser X* = ln 3,  L~'' <= 1/4.
* Ex 2: unbalanced matrix factorisation L(A, B) = 1/2 ||A B^T - Y||_F^2,
  A(0) = alpha e_1, B(0) = e_1 / alpha, Y = 0.5 * ones(2, 2) (general d, r allowed).
* Normalised MF: L(A, B) = 1/2 || A B^T / ||A B^T||_F - Y ||_F^2, 0-homogeneous in A and in B.
* Constant-sigma loss: L_gamma(x) = sigma * arccos(<xi_gamma, x/||x||>), xi_gamma uniform on the
  sphere; scale invariant with ||grad L_gamma(x)|| = sigma / ||x|| EXACTLY, i.e. the talk's
  assumption ||grad L_gamma(x_bar)|| = sigma for all x, gamma. ``heavy_tail`` multiplies sigma
  by a Pareto(shape) factor normalised to E[factor^2] = 1 (heavy-tailed gradient noise).
* Normalised linear regression: L(w) = (1/2n) sum_i (<a_i, w/||w||> - y_i)^2 (full batch) or a
  random sample per step; scale invariant, smooth on the sphere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Problem",
    "EX1_Z",
    "ex1_tilde_loss",
    "ex1_tilde_grad",
    "ex1_x_star",
    "ex1",
    "mf",
    "normalized_mf",
    "constant_sigma",
    "noise_factor_sampler",
    "normalized_linreg",
]


@dataclass
class Problem:
    """A toy problem: ``loss(params, key)``, ``init(scale, key)`` and metadata.

    ``groups``: name -> bool-mask pytree of the scale-invariant parameter groups (empty if
    the loss is not scale invariant). ``meta``: problem constants (optimum, X*, sigma ...).
    """

    name: str
    loss: Callable[[Any, jax.Array], jax.Array]
    init: Callable[[float, jax.Array], Any]
    groups: Dict[str, Any] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ Ex 1
EX1_Z = np.array([1.0, 1.0, 1.0, -1.0])


def ex1_tilde_loss(X):
    """L~(X) = mean_i ln(1 + exp(-z_i X)), z = (1, 1, 1, -1): convex, 1/4-smooth, X* = ln 3."""
    X = jnp.asarray(X)
    z = jnp.asarray(EX1_Z, dtype=jnp.result_type(X, float))
    return jnp.mean(jnp.logaddexp(0.0, -z * X[..., None]), axis=-1)


def ex1_tilde_grad(X):
    """L~'(X) = mean_i -z_i sigmoid(-z_i X)."""
    X = jnp.asarray(X)
    z = jnp.asarray(EX1_Z, dtype=jnp.result_type(X, float))
    return jnp.mean(-z * jax.nn.sigmoid(-z * X[..., None]), axis=-1)


def ex1_x_star() -> float:
    """Minimiser of L~: sigmoid(X) = 3 sigmoid(-X)  <=>  e^X = 3."""
    return float(np.log(3.0))


def ex1(k: int) -> Problem:
    """Ex 1 with 2k factors; ``init(scale)`` sets every x_i = scale (so X(0) = scale^(2k))."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)

    def model(x):
        return jnp.prod(x)

    def loss(x, key=None):
        return ex1_tilde_loss(model(x))

    def init(scale, key=None):
        return jnp.full((2 * k,), scale)

    return Problem(f"ex1_k{k}", loss, init, meta={"k": k, "x_star": ex1_x_star(), "model": model})


# ------------------------------------------------------------------ Ex 2 and normalised MF
def _target(d: int) -> jnp.ndarray:
    return 0.5 * jnp.ones((d, d))


def mf(d: int = 2, r: int = 1) -> Problem:
    """Ex 2: L(A, B) = 1/2 ||A B^T - Y||_F^2 with Y = 0.5 ones(d, d) (rank 1, ||Y||_F = d/2).

    ``init(alpha)``: A = alpha e_1 e_1^T, B = e_1 e_1^T / alpha (d x r), the talk's unbalanced init.
    Optimum 0. Training B only from that init leaves the rows i >= 2 of Y unfit:
    min_B L = 1/2 * 0.25 * d (d - 1) (= 0.25 for d = 2, the talk's "optimal loss when training B").
    """
    Y = _target(d)

    def model(p):
        return p["A"] @ p["B"].T

    def loss(p, key=None):
        return 0.5 * jnp.sum((model(p) - Y.astype(p["A"].dtype)) ** 2)

    def init(alpha, key=None):
        e = jnp.zeros((d, r)).at[0, 0].set(1.0)
        return {"A": alpha * e, "B": e / alpha}

    return Problem(f"mf_d{d}_r{r}", loss, init,
                   meta={"model": model, "b_only_optimum": 0.125 * d * (d - 1), "Y": Y})


def normalized_mf(d: int = 2, r: int = 1, batch: int | None = None) -> Problem:
    """L(A, B) = 1/2 || A B^T / ||A B^T||_F - Y ||_F^2, Y = ones/d (unit Frobenius norm, so the
    optimum is 0). 0-homogeneous in A and in B separately (two scale-invariant groups).

    With ``batch`` (an int), each step samples ``batch`` entries (i, j) uniformly and uses the
    unbiased estimate (d^2 / batch) * 1/2 sum_sampled (M_ij - Y_ij)^2, still scale invariant.
    """
    Y = jnp.ones((d, d)) / d

    def residual(p):
        M = p["A"] @ p["B"].T
        return M / jnp.linalg.norm(M) - Y.astype(M.dtype)

    if batch is None:
        def loss(p, key=None):
            return 0.5 * jnp.sum(residual(p) ** 2)
    else:
        def loss(p, key):
            idx = jax.random.randint(key, (batch,), 0, d * d)
            res = residual(p).reshape(-1)[idx]
            return 0.5 * (d * d / batch) * jnp.sum(res**2)

    def init(alpha, key=None):
        e = jnp.zeros((d, r)).at[0, 0].set(1.0)
        if key is not None and (d > 2 or r > 1):
            e = e + 0.01 * jax.random.normal(key, (d, r))
        return {"A": alpha * e, "B": e / alpha}

    groups = {"A": {"A": True, "B": False}, "B": {"A": False, "B": True}}
    return Problem(f"normalized_mf_d{d}_r{r}", loss, init, groups=groups,
                   meta={"optimum": 0.0, "full_loss": lambda p: 0.5 * jnp.sum(residual(p) ** 2)})


# ------------------------------------------------------------------ constant-sigma loss
def noise_factor_sampler(heavy_tail: float, spike_prob: float = 1.0, spike_scale: float = 1.0):
    """Sampler of the gradient-norm factor f (E[f^2] = 1) of the heavy-tailed constant-sigma loss.

    f_raw = spike_scale * Pareto(heavy_tail, x_m = 1) with probability ``spike_prob``, else 1;
    f = f_raw / sqrt(E f_raw^2), E f_raw^2 = (1 - p) + p spike_scale^2 a / (a - 2). Returns
    ``sample(key) -> scalar`` (JAX) and ``sample_np(rng, n) -> array`` (NumPy, for predictions).
    """
    a, p, m = float(heavy_tail), float(spike_prob), float(spike_scale)
    if not a > 2:
        raise ValueError(f"heavy_tail (Pareto shape) must be > 2 for finite variance, got {heavy_tail}")
    if not 0 < p <= 1:
        raise ValueError(f"spike_prob must be in (0, 1], got {spike_prob}")
    norm = np.sqrt((1 - p) + p * m**2 * a / (a - 2))

    def sample(key):
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, minval=1e-12, maxval=1.0)
        spike = jax.random.uniform(k2) < p
        return jnp.where(spike, m * u ** (-1.0 / a), 1.0) / norm

    def sample_np(rng, n):
        u = rng.uniform(1e-12, 1.0, n)
        return np.where(rng.uniform(size=n) < p, m * u ** (-1.0 / a), 1.0) / norm

    return sample, sample_np


def constant_sigma(dim: int = 64, sigma: float = 1.0, heavy_tail: float | None = None,
                   spike_prob: float = 1.0, spike_scale: float = 1.0) -> Problem:
    """L_gamma(x) = s_gamma * arccos(<xi_gamma, x/||x||>), xi_gamma ~ Uniform(sphere).

    grad L_gamma(x) = -s_gamma (xi - <xi, x_bar> x_bar) / (||x|| sin theta), theta the angle, so
    ||grad L_gamma(x)|| = s_gamma / ||x|| and <x, grad L_gamma(x)> = 0 exactly. s_gamma = sigma,
    or sigma * f_gamma with f from :func:`noise_factor_sampler` (E f^2 = 1) if ``heavy_tail`` is
    given (rare Pareto spikes with ``spike_prob`` < 1).
    ``init(scale, key)``: a random direction with ||x(0)|| = scale.
    """
    factor = None if heavy_tail is None else noise_factor_sampler(heavy_tail, spike_prob, spike_scale)

    def loss(x, key):
        k1, k2 = jax.random.split(key)
        xi = jax.random.normal(k1, x.shape, x.dtype)
        xi = xi / jnp.linalg.norm(xi)
        cos = jnp.clip(jnp.vdot(xi, x) / jnp.linalg.norm(x), -1.0 + 1e-15, 1.0 - 1e-15)
        s = sigma if factor is None else sigma * factor[0](k2)
        return s * jnp.arccos(cos)

    def init(scale, key):
        v = jax.random.normal(key, (dim,))
        return scale * v / jnp.linalg.norm(v)

    return Problem(f"constant_sigma_d{dim}", loss, init, groups={"x": True},
                   meta={"sigma": sigma, "heavy_tail": heavy_tail,
                         "factor_np": None if factor is None else factor[1]})


# ------------------------------------------------------------------ normalised linear regression
def normalized_linreg(dim: int = 16, n: int = 64, noise: float = 0.0, batch: int | None = None,
                      data_seed: int = 0) -> Problem:
    """L(w) = (1/2n) sum_i (<a_i, w/||w||> - y_i)^2, y_i = <a_i, w*> + noise * eps_i, ||w*|| = 1.

    Full batch if ``batch`` is None, else a uniform sample of ``batch`` rows per step (SGD).
    ``meta['grad_sq_on_sphere'](w)`` is E_gamma ||grad L_gamma(w_bar)||^2 (exact over the data).
    """
    rng = np.random.default_rng(data_seed)
    a = rng.standard_normal((n, dim)) / np.sqrt(dim)
    w_star = rng.standard_normal(dim)
    w_star /= np.linalg.norm(w_star)
    y = a @ w_star + noise * rng.standard_normal(n)

    def rows_loss(w, A, yy):
        pred = A.astype(w.dtype) @ (w / jnp.linalg.norm(w))
        return 0.5 * jnp.mean((pred - yy.astype(w.dtype)) ** 2)

    if batch is None:
        def loss(w, key=None):
            return rows_loss(w, a, y)
    else:
        def loss(w, key):
            idx = jax.random.randint(key, (batch,), 0, n)
            return rows_loss(w, jnp.asarray(a)[idx], jnp.asarray(y)[idx])

    def grad_sq_on_sphere(w):
        wb = w / jnp.linalg.norm(w)
        per = jax.vmap(lambda ai, yi: jax.grad(rows_loss)(wb, ai[None], yi[None]))(
            jnp.asarray(a, w.dtype), jnp.asarray(y, w.dtype))
        if batch is None:
            g = jnp.mean(per, axis=0)
            return jnp.sum(g**2)
        # E over a batch of `batch` i.i.d. rows: ||mean||^2 + (E||g_i||^2 - ||mean||^2)/batch
        mean = jnp.mean(per, axis=0)
        second = jnp.mean(jnp.sum(per**2, axis=1))
        return jnp.sum(mean**2) + (second - jnp.sum(mean**2)) / batch

    def init(scale, key):
        v = jax.random.normal(key, (dim,))
        return scale * v / jnp.linalg.norm(v)

    full = float(0.5 * np.mean((a @ w_star - y) ** 2))
    return Problem(f"normalized_linreg_d{dim}", loss, init, groups={"w": True},
                   meta={"w_star": w_star, "loss_at_w_star": full,
                         "full_loss": lambda w: rows_loss(w, a, y),
                         "grad_sq_on_sphere": grad_sq_on_sphere})
