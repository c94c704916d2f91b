"""Rotational optimizer wrapper (Kosson et al., ICML 2024, "rotational variants"), as optax.

Follows the published algorithm (github.com/epfml/REQ, ``shared/optimizers/rotational_wrapper.py``).
A *neuron* is a row of a weight tensor (``p.reshape(p.shape[0], -1)[i]``, REQ's PyTorch layout;
``neuron_axis=-1`` for flax (in, out) kernels; the whole tensor with ``per_neuron=False``). For every rotational leaf (default: ``ndim > 1``), with n the neuron's
initial norm (fixed for the whole run) and u the inner optimizer's update:

    p   <- n * centre(p) / ||centre(p)||                 (zero_mean: centre = remove the mean;
                                                          a no-op after the first step)
    u   <- centre(u - p <u, p> / n^2)                    (remove radial component and mean)
    s   <- beta s + (1 - beta) ||u||^2,  s_hat = s / (1 - beta^t)      (beta = 0.9)
    p'  <- p + eta_r * n * u / (sqrt(s_hat) + eps)                     (eps = 1e-8)
    p'  <- n * p' / ||p'||

so each neuron rotates by arctan(eta_r ||u|| / sqrt(s_hat)) ~= eta_r per step from step 0 (no
transient towards equilibrium) and keeps its norm n. eta_r is the target angular update: the
equilibrium value of the inner optimizer (``scaleinv.theory.equilibrium_angle_*``). Leaves that
are not rotational get the inner update unchanged (the "standard non-rotational update").

Sign convention: ``inner`` is an optax optimizer whose output is a DESCENT update (what
``optax.sgd`` / ``optax.adamw`` / ``optax.lion`` return, to be added to the params). Only its
per-neuron direction is used: its scale (the learning rate) is divided out by the EMA, and a
decoupled weight-decay term -eta lambda p is radial and removed exactly. The REQ code applies
the zero-mean centring of the weights once at construction; here it happens in the first update
(call :func:`center_params` before training to reproduce REQ's step-0 weights exactly).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from scaleinv import theory

__all__ = [
    "RotationalState",
    "rotational",
    "rotational_sgdm",
    "rotational_adamw",
    "rotational_lion",
    "default_rotate",
    "center_params",
]

ScalarOrSchedule = Union[float, Callable[[jax.Array], jax.Array]]


class RotationalState(NamedTuple):
    """count: steps taken; inner_state: the inner optimizer's state; norm: per-leaf target
    neuron norms n (shape (rows,) per rotational leaf, () for a whole-tensor leaf, a scalar 0
    placeholder for non-rotational leaves); update_sq: per-leaf EMA of ||u_perp||^2 (same
    shapes)."""

    count: jax.Array
    inner_state: Any
    norm: Any
    update_sq: Any


def default_rotate(params):
    """REQ's default: tensors with at least 2 dimensions (matrices, conv kernels) are rotational,
    vectors (biases, gains) are not."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def _rows(x, per_neuron, axis=0):
    """(neurons, fan) view: ``axis`` (the output-feature axis) moved first, the rest flattened."""
    if not per_neuron:
        return x.reshape(1, -1)
    x = jnp.moveaxis(x, axis, 0)
    return x.reshape(x.shape[0], -1)


def _unrows(rows, like, per_neuron, axis=0):
    """Inverse of :func:`_rows` for an array shaped like ``like``."""
    if not per_neuron:
        return rows.reshape(like.shape)
    moved = jnp.moveaxis(like, axis, 0).shape
    return jnp.moveaxis(rows.reshape(moved), 0, axis)


def _centre(rows, zero_mean):
    return rows - jnp.mean(rows, axis=1, keepdims=True) if zero_mean else rows


def _row_norm(rows):
    return jnp.sqrt(jnp.sum(jnp.square(rows), axis=1))


def _check(name, value, lo, hi, lo_open=False, hi_open=True):
    if isinstance(value, jax.core.Tracer) or callable(value):
        return
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {v}")


def center_params(params, rotate=None, per_neuron: bool = True, neuron_axis: int = 0):
    """REQ's initial centring: every rotational neuron gets its mean removed and is rescaled to
    its original norm (so the stored norm n equals the initial norm)."""
    rotate = default_rotate(params) if rotate is None else (rotate(params) if callable(rotate) else rotate)

    def one(p, r):
        if not r:
            return p
        rows = _rows(p, per_neuron, neuron_axis)
        n = _row_norm(rows)[:, None]
        c = _centre(rows, True)
        return _unrows(n * c / _row_norm(c)[:, None], p, per_neuron, neuron_axis).astype(p.dtype)

    return jax.tree.map(one, params, rotate)


def rotational(inner: optax.GradientTransformation, target: ScalarOrSchedule, *,
               rotate=None, per_neuron: bool = True, neuron_axis: int = 0, zero_mean: bool = True,
               update_norm_decay: float = 0.9, eps: float = 1e-8,
               inner_learning_rate: Optional[ScalarOrSchedule] = None
               ) -> optax.GradientTransformationExtraArgs:
    """Rotational variant of ``inner`` (Kosson et al. 2024; REQ ``RotationalWrapper``).

    Args:
      inner: optax optimizer producing descent updates (e.g. ``optax.adamw(lr, weight_decay=wd)``).
      target: eta_r, the angular update per step in radians (float or schedule of the step
        count), normally ``scaleinv.theory.equilibrium_angle_*`` of the inner optimizer.
      rotate: bool pytree or callable params -> bool pytree selecting rotational leaves
        (default :func:`default_rotate`: ``ndim > 1``).
      per_neuron: rotate / fix the norm of each row (True) or of each whole tensor (False).
      neuron_axis: the output-feature axis of the rotational leaves: 0 for REQ's PyTorch layout
        (out, in, ...), -1 for flax ``nn.Dense`` kernels (in, out).
      zero_mean: remove each neuron's mean from the weights (once) and from every update.
      update_norm_decay: beta of the EMA of ||u_perp||^2 (REQ default 0.9); 0 makes every step
        rotate exactly by arctan(eta_r).
      eps: added to sqrt(EMA) (REQ default 1e-8).
      inner_learning_rate: the inner optimizer's learning rate (float or schedule), if any. The
        rotational leaves' inner updates are divided by it, so that u (and ``eps``) are in REQ's
        units: the unscaled update m_hat/(sqrt(v_hat)+eps) / momentum buffer / sign. Without it
        u carries the LR, which only changes the meaning of ``eps`` (relative size eps/||u||).
    ``update`` needs ``params``. Composes with ``optax.masked`` / ``optax.multi_transform``.
    """
    _check("update_norm_decay", update_norm_decay, 0.0, 1.0)
    _check("eps", eps, 0.0, float("inf"))
    if not callable(target):
        _check("target (eta_r, radians per step)", target, 0.0, float("inf"), lo_open=True)

    def resolve(params):
        if rotate is None:
            return default_rotate(params)
        return rotate(params) if callable(rotate) else rotate

    def init_fn(params):
        rot = resolve(params)

        def norm0(p, r):
            if not r:
                # a scalar placeholder, not a zero-size array: orbax cannot checkpoint those
                return jnp.zeros((), jnp.result_type(p))
            n = _row_norm(_rows(p, per_neuron, neuron_axis))  # centring keeps the norm (REQ rescales to it)
            return n if per_neuron else n[0]

        norms = jax.tree.map(norm0, params, rot)
        return RotationalState(count=jnp.zeros((), jnp.int32), inner_state=inner.init(params),
                               norm=norms, update_sq=jax.tree.map(jnp.zeros_like, norms))

    def update_fn(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("rotational: update needs params: call update(grads, state, params)")
        inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra)
        rot = resolve(params)
        t = state.count + 1
        eta_r = target(state.count) if callable(target) else target
        if inner_learning_rate is None:
            lr_in = 1.0
        else:
            lr_in = inner_learning_rate(state.count) if callable(inner_learning_rate) else inner_learning_rate

        def leaf(u, p, n, s, r):
            if not r:
                return u, s
            dt = p.dtype
            rows_p = _centre(_rows(p, per_neuron, neuron_axis), zero_mean)
            nn = n.reshape(-1, 1).astype(dt)
            rows_p = nn * rows_p / _row_norm(rows_p)[:, None]          # on the sphere (idempotent)
            rows_u = _rows(u, per_neuron, neuron_axis).astype(dt) / jnp.asarray(lr_in, dt)
            rows_u = rows_u - rows_p * (jnp.sum(rows_u * rows_p, axis=1, keepdims=True) / nn**2)
            rows_u = _centre(rows_u, zero_mean)
            sq = jnp.sum(jnp.square(rows_u), axis=1).reshape(s.shape)
            s_new = update_norm_decay * s + (1.0 - update_norm_decay) * sq
            bias = 1.0 - jnp.asarray(update_norm_decay, dt) ** t.astype(dt)
            avg = jnp.sqrt(s_new / bias).reshape(-1, 1)
            new = rows_p + jnp.asarray(eta_r, dt) * nn * rows_u / (avg + eps)
            new = nn * new / _row_norm(new)[:, None]
            return (_unrows(new, p, per_neuron, neuron_axis) - p).astype(p.dtype), s_new

        out = jax.tree.map(leaf, inner_updates, params, state.norm, state.update_sq, rot)
        treedef = jax.tree.structure(inner_updates)
        flat = treedef.flatten_up_to(out)
        new_updates = treedef.unflatten([o[0] for o in flat])
        new_sq = treedef.unflatten([o[1] for o in flat])
        return new_updates, RotationalState(count=optax.safe_increment(state.count), inner_state=inner_state,
                                            norm=state.norm, update_sq=new_sq)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _lr_fn(learning_rate):
    return learning_rate if callable(learning_rate) else (lambda count: learning_rate)


def _not(rotate):
    def mask(params):
        r = default_rotate(params) if rotate is None else (rotate(params) if callable(rotate) else rotate)
        return jax.tree.map(lambda b: not b, r)
    return mask


def _check_wd(weight_decay):
    _check("weight_decay (rotational equilibrium needs weight decay)", weight_decay, 0.0, float("inf"),
           lo_open=True)


def rotational_sgdm(learning_rate: ScalarOrSchedule, weight_decay: float, momentum: float = 0.0, *,
                    rotate=None, **kw) -> optax.GradientTransformationExtraArgs:
    """RV-SGDM: rotational leaves rotate at eta_r = sqrt(2 eta_t lambda / (1 + alpha)) along the
    momentum of the gradients (REQ ``sgdm``: the L2 term does not enter their direction); other
    leaves get SGD with momentum and L2 through the momentum."""
    _check_wd(weight_decay)
    _check("momentum", momentum, 0.0, 1.0)
    lr = _lr_fn(learning_rate)
    inner = optax.chain(optax.add_decayed_weights(weight_decay, mask=_not(rotate)),
                        optax.sgd(learning_rate, momentum=momentum or None))
    return rotational(inner, lambda c: theory.equilibrium_angle_sgdm(lr(c), weight_decay, momentum),
                      rotate=rotate, inner_learning_rate=learning_rate, **kw)


def rotational_adamw(learning_rate: ScalarOrSchedule, weight_decay: float, b1: float = 0.9,
                     b2: float = 0.999, eps_adam: float = 1e-8, *, rotate=None, **kw
                     ) -> optax.GradientTransformationExtraArgs:
    """RV-AdamW: rotational leaves rotate at eta_r = sqrt(2 eta_t lambda (1 - b1)/(1 + b1)) along
    Adam's m_hat / (sqrt(v_hat) + eps); other leaves get plain AdamW."""
    _check_wd(weight_decay)
    _check("b1", b1, 0.0, 1.0)
    lr = _lr_fn(learning_rate)
    inner = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps_adam, weight_decay=weight_decay)
    return rotational(inner, lambda c: theory.equilibrium_angle_adamw(lr(c), weight_decay, b1),
                      rotate=rotate, inner_learning_rate=learning_rate, **kw)


def rotational_lion(learning_rate: ScalarOrSchedule, weight_decay: float, b1: float = 0.9,
                    b2: float = 0.99, *, rotate=None, **kw) -> optax.GradientTransformationExtraArgs:
    """RV-Lion: rotational leaves rotate at the Lion equilibrium rate
    (:func:`scaleinv.theory.equilibrium_angle_lion`) along sign(b1 m + (1 - b1) g); other leaves
    get plain Lion."""
    _check_wd(weight_decay)
    _check("b1", b1, 0.0, 1.0)
    _check("b2", b2, 0.0, 1.0)
    lr = _lr_fn(learning_rate)
    inner = optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
    return rotational(inner, lambda c: theory.equilibrium_angle_lion(lr(c), weight_decay, b1, b2),
                      rotate=rotate, inner_learning_rate=learning_rate, **kw)
