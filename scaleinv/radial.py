r"""Norm-controlling weight updates as optax transforms: Hyperball and the radial brake.

Both wrap an ``inner`` optax optimizer whose output is a DESCENT update d (what ``optax.sgd`` /
``optax.adam`` return, added to the params), and act per selected leaf ("per matrix"; ``select``:
a bool pytree or a callable params -> bool pytree, default :func:`scaleinv.rotational.default_rotate`,
``ndim > 1``). Unselected leaves get the inner update unchanged.

**Hyperball** (Wen, Dang, Lyu, Ma, Liang 2025, "Hyperball optimization"; AdamH / MuonH with an
Adam / Muon inner update u = -d):

$$W_{t+1} = \mathrm{Norm}\big(W_t - \eta\,\mathrm{Norm}(u_t)\,\|W_0\|\big)\,\|W_0\|,
\qquad \mathrm{Norm}(x) = x / \|x\|_F,$$

so ||W_t|| = ||W_0|| at every step (R = ||W_0|| is recorded by ``init``) and the inner
optimizer's scale (its learning rate) is divided out. *Angle per step* (derived): write
Norm(d) = cos(phi) W/R + sin(phi) e with e a unit vector orthogonal to W. Then
V = W + eta R Norm(d) has components R (1 + eta cos phi) along W/R and eta R sin phi along e, so

$$\tan\theta_t = \frac{\eta \sin\varphi}{1 + \eta\cos\varphi}, \qquad
\theta_t = \arctan\eta \ \text{ exactly when } d \perp W$$

(:func:`hyperball_angle`). On a scale-invariant loss <W, grad L(W)> = 0 (Euler, degree 0), so
with a plain-SGD inner update (d = -g) every step turns W by exactly arctan(eta), from step 0: no
transient, no dependence on the gradient's norm or on ||W_0||. An inner update with momentum or
Adam's per-coordinate scaling has a radial part (cos phi != 0), so only the bound
theta <= arctan(eta / sqrt(1 - eta^2)) (the maximum over phi, eta < 1) holds for it.

**Radial brake**: after the inner update w_new = w + d, the norm change is scaled,

$$\|w'\| = \|w\| + s\,(\|w_{\rm new}\| - \|w\|), \qquad
s = s_{\rm out} \text{ if } \|w_{\rm new}\| > \|w\| \text{ else } s_{\rm in},\qquad
w' = \|w'\|\,\frac{w_{\rm new}}{\|w_{\rm new}\|},$$

the direction of w_new kept (s = 1: the inner optimizer unchanged; s = 0: the norm frozen).
*With SGD + WD on a constant-sigma scale-invariant loss* (derived): the brake keeps the direction,
so the angle of a step at norm r is SGD + WD's; and the fixed point of the norm map
(||w_new|| = ||w||) is SGD + WD's for any s > 0: the equilibrium norm and angle
(``theory.equilibrium_sq_norm``, sqrt(2 eta lambda)) are unchanged. What changes is the time: far
above equilibrium ||w_new|| = (1 - eta lambda) ||w|| (the gradient step is negligible), so
||w'|| = (1 - s_in eta lambda) ||w|| and the time to equilibrium grows by
1 / (-2 ln(1 - s_in eta lambda)) ~ 1 / (2 s_in eta lambda) per unit of ln||w_0||^2
(:func:`brake_t_eq_slope`); near the fixed point the linearised norm map
r_{t+1} - r* = (1 - 4 eta lambda)(r_t - r*) becomes (1 - 4 s eta lambda)(r_t - r*): the relaxation is
s times slower (s_in above, s_out below r*).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from scaleinv.rotational import default_rotate

__all__ = ["HyperballState", "hyperball", "radial_brake", "hyperball_angle", "brake_t_eq_slope"]

ScalarOrSchedule = Union[float, Callable[[jax.Array], jax.Array]]


def _selected(select, params):
    if select is None:
        return default_rotate(params)
    return select(params) if callable(select) else select


def _norm(x):
    return jnp.sqrt(jnp.sum(jnp.square(x)))


class HyperballState(NamedTuple):
    count: jax.Array
    inner_state: Any
    radius: Any          # ||W_0|| per selected leaf (0 for the others)


def hyperball(inner: optax.GradientTransformation, learning_rate: ScalarOrSchedule,
              select=None, eps: float = 1e-30) -> optax.GradientTransformation:
    """W <- Norm(W + eta Norm(d) ||W_0||) ||W_0|| per selected leaf, d the inner DESCENT update
    (the module docstring; eta = ``learning_rate``, a float or a schedule of the step count).
    ``eps`` guards Norm(d) of a zero update (then W is unchanged)."""
    if not callable(learning_rate) and not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")

    def init(params):
        sel = _selected(select, params)
        radius = jax.tree.map(lambda p, s: _norm(p) if s else jnp.zeros((), jnp.result_type(p)), params, sel)
        return HyperballState(jnp.zeros([], jnp.int32), inner.init(params), radius)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("hyperball needs the params (pass them to update)")
        d, inner_state = inner.update(updates, state.inner_state, params)
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        sel = _selected(select, params)

        def one(p, u, r, s):
            if not s:
                return u
            v = p + eta * r * u / jnp.maximum(_norm(u), eps)
            return (r * v / _norm(v) - p).astype(p.dtype)

        out = jax.tree.map(one, params, d, state.radius, sel)
        return out, HyperballState(optax.safe_increment(state.count), inner_state, state.radius)

    return optax.GradientTransformation(init, update)


def radial_brake(inner: optax.GradientTransformation, outward: float = 0.25, inward: float = 0.5,
                 select=None) -> optax.GradientTransformation:
    """||w'|| = ||w|| + s (||w + d|| - ||w||), direction of w + d kept, s = ``outward`` when the norm
    grows and ``inward`` when it shrinks (per selected leaf; the module docstring). Factors in [0, 1]."""
    for name, v in (("outward", outward), ("inward", inward)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1] (a brake), got {v!r}")

    def init(params):
        return inner.init(params)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("radial_brake needs the params (pass them to update)")
        d, state = inner.update(updates, state, params)
        sel = _selected(select, params)

        def one(p, u, s):
            if not s:
                return u
            new = p + u
            r0, r1 = _norm(p), _norm(new)
            f = jnp.where(r1 > r0, outward, inward)
            target = r0 + f * (r1 - r0)
            return jnp.where(r1 > 0, new * (target / jnp.where(r1 > 0, r1, 1.0)) - p, u).astype(p.dtype)

        return jax.tree.map(one, params, d, sel), state

    return optax.GradientTransformation(init, update)


def hyperball_angle(eta, radial_cos=0.0):
    """Hyperball's angle per step: atan2(eta sin phi, 1 + eta cos phi), cos phi = ``radial_cos``, the
    cosine between the inner descent update and W (0 for SGD on a scale-invariant loss: arctan(eta))."""
    c = float(radial_cos)
    return math.atan2(float(eta) * math.sqrt(max(0.0, 1.0 - c * c)), 1.0 + float(eta) * c)


def brake_t_eq_slope(eta, weight_decay, inward):
    """SGD + WD + radial brake: d t_eq / d ln||w_0||^2 far above equilibrium,
    1 / (-2 ln(1 - s_in eta lambda)) (the module docstring; -> 1/(2 s_in eta lambda))."""
    return 1.0 / (-2.0 * math.log(1.0 - float(inward) * float(eta) * float(weight_decay)))
