"""Optimizers of the recipe as optax ``GradientTransformation``s.

* :func:`sgd_wd` -- SGD + weight decay, no momentum (talk, "Ingredient 2"):
      x(t+1) = (1 - eta_t * lambda) x(t) - eta_t * g(t).
* :func:`relative_global_clip` -- relative global clipping (talk, "Ingredient 3"; paper Sec. 5):
      g <- g * min(1, sqrt(2 C lambda / eta_t) ||x_S|| / ||g_S||),
  one global norm over the chosen (scale-invariant) parameter subset S, C > 1 (default 2).
* :func:`sgd_wd_rgc` -- the two chained, the SIBERT encoder recipe.
* :func:`exponential_lr` -- the LR schedule that makes plain GD equivalent to GD+WD on a
  scale-invariant loss (see :func:`scaleinv.theory.exp_lr_schedule`).

Plain GD/SGD/Adam/AdamW/LAMB come from optax directly.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = Union[float, Schedule]
MaskOrFn = Optional[Union[Any, Callable[[Any], Any]]]

__all__ = [
    "sgd_wd",
    "relative_global_clip",
    "RelativeClipState",
    "sgd_wd_rgc",
    "exponential_lr",
    "clip_stats",
    "masked_tree_norm",
]


def _check_positive(name: str, value, allow_zero: bool = False):
    if callable(value) or isinstance(value, jax.core.Tracer):
        return  # schedules and traced (vmapped) hyper-parameters are checked by the caller
    try:
        if isinstance(value, (str, bytes)):   # float("0.5") works, but the factories use the value as is
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a schedule (callable), got {value!r}") from None
    if not (v > 0 or (allow_zero and v == 0)):      # NaN fails both comparisons
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {v}")


def _at(schedule: ScalarOrSchedule, count):
    return schedule(count) if callable(schedule) else jnp.asarray(schedule)


def _resolve_mask(mask: MaskOrFn, tree):
    if mask is None:
        return jax.tree.map(lambda _: True, tree)
    return mask(tree) if callable(mask) else mask


def _safe_sqrt(sq):
    """sqrt with a finite derivative at 0 (jnp.sqrt's is inf there, which makes a NaN through
    the chain rule when the whole group is zero)."""
    zero = sq == 0            # (NaN and inf fall through to jnp.sqrt and stay NaN / inf)
    return jnp.where(zero, jnp.zeros_like(sq), jnp.sqrt(jnp.where(zero, 1.0, sq)))


def masked_tree_norm(tree, mask=None) -> jax.Array:
    """Global l2 norm sqrt(sum_leaves ||leaf||^2) over the leaves where ``mask`` is True
    (0 for an empty or all-zero selection, with derivative 0 there instead of NaN)."""
    mask = _resolve_mask(mask, tree)
    sq = jax.tree.map(lambda x, m: jnp.sum(jnp.square(x)) if m else jnp.zeros((), jnp.result_type(x)),
                      tree, mask)
    return _safe_sqrt(sum(jax.tree.leaves(sq), jnp.zeros(())))


def sgd_wd(learning_rate: ScalarOrSchedule, weight_decay: ScalarOrSchedule, mask: MaskOrFn = None
           ) -> optax.GradientTransformation:
    r"""SGD with (coupled) weight decay and no momentum (talk, "Ingredient 2: SGD + WD"):

    $$x(t+1) = (1 - \eta_t\lambda)\,x(t) - \eta_t\,g(t)$$

    implemented as update = -eta_t (g + lambda x); ``mask`` selects the decayed leaves
    (default: all). ``learning_rate`` may be an optax schedule (eta_t is then used in both
    terms, as the formula requires); so may ``weight_decay`` (lambda_t, same step count).
    """
    _check_positive("learning_rate", learning_rate)
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.scale_by_learning_rate(learning_rate),
    )


class RelativeClipState(NamedTuple):
    """State of :func:`relative_global_clip`: step count and what the last step did."""

    count: jax.Array        # steps taken (int32)
    clipped: jax.Array      # bool: did the last update clip?
    grad_norm: jax.Array    # ||g_S|| before clipping, last step
    threshold: jax.Array    # sqrt(2 C lambda / eta_t) ||x_S||, last step
    num_clipped: jax.Array  # total number of clipped steps so far (int32)


def relative_global_clip(learning_rate: ScalarOrSchedule, weight_decay: ScalarOrSchedule, C: float = 2.0,
                         mask: MaskOrFn = None, eps: float = 0.0) -> optax.GradientTransformation:
    r"""Relative global clipping (talk, "Ingredient 3"; paper Sec. 5):

    $$g_S \leftarrow g_S\,\min\Big(1,\ \frac{\sqrt{2C\lambda/\eta_t}\;\|x_S\|}{\|g_S\|}\Big)$$

    where S is the parameter subset selected by ``mask`` (a bool pytree or a callable
    params -> bool pytree; default all leaves), ||.|| is ONE global l2 norm over S, and
    eta_t the LR of the current step (``learning_rate`` may be a schedule; pass the same one
    the optimizer uses; ``weight_decay`` likewise: lambda_t). Leaves outside S pass unchanged. Requires ``params`` in ``update``.
    With ||grad L(x_bar)|| = sigma constant the SGD+WD equilibrium has
    ||g|| = sqrt(lambda (2 - eta lambda)/eta) ||x||, so with C > 1 it never fires there.

    Edge cases (defined results, tested in ``tests/core/test_core_optim_edges.py``):

    * ``||x_S|| = 0`` -- the threshold is 0 (also when eta_t = 0, where the formula reads
      inf * 0): a zero gradient passes unchanged (``clipped`` False, update 0), a nonzero finite
      gradient is clipped to 0 (``clipped`` True). Derivatives through the update stay finite.
    * ``eta_t = 0`` with ``||x_S|| > 0`` -- the threshold is inf: nothing is clipped.
    * any inf or NaN in ``g_S`` or ``x_S`` -- every entry of S's update is NaN and ``clipped`` is
      False: a broken step is never silently zeroed or passed through unclipped (wrap the
      optimizer in ``optax.apply_if_finite`` to skip such steps). Leaves outside S pass unchanged.
    * ``eps`` (default 0) is added to the threshold, a floor: with ``||x_S|| = 0`` a gradient
      of norm above ``eps`` is clipped to norm ``eps`` (not to 0).
    """
    _check_positive("learning_rate", learning_rate)
    _check_positive("weight_decay", weight_decay)
    if isinstance(C, jax.core.Tracer):
        pass  # traced (vmapped) C: the caller validates the grid
    else:
        try:
            C = float(C)
        except (TypeError, ValueError):
            raise TypeError(f"C must be a number > 1, got {C!r}") from None
    if not isinstance(C, jax.core.Tracer) and not C > 1.0:
        raise ValueError(f"C must be > 1 (the talk's default is 2; the paper uses sqrt(C) = 2, "
                         f"i.e. C = 4), got C = {C}")

    def init_fn(params):
        f = jnp.zeros((), jnp.float32)
        return RelativeClipState(count=jnp.zeros((), jnp.int32), clipped=jnp.zeros((), bool),
                                 grad_norm=f, threshold=f, num_clipped=jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("relative_global_clip needs params: call update(grads, state, params)")
        m = _resolve_mask(mask, params)
        eta = _at(learning_rate, state.count)
        lam = _at(weight_decay, state.count)
        g_norm = masked_tree_norm(updates, m)
        x_norm = masked_tree_norm(params, m)
        # sqrt(2 C lambda / eta_t) ||x_S||, defined as 0 when ||x_S|| = 0 (even if eta_t = 0)
        x_pos = x_norm > 0
        scale = jnp.sqrt(2.0 * C * lam / jnp.where(x_pos, eta, 1.0))
        threshold = jnp.where(x_pos, scale * x_norm, jnp.zeros_like(x_norm)) + eps
        finite = jnp.isfinite(g_norm) & jnp.isfinite(x_norm)
        clipped = finite & (g_norm > threshold)
        factor = jnp.where(clipped, threshold / jnp.where(clipped, g_norm, 1.0), 1.0)
        factor = jnp.where(finite, factor, jnp.nan)   # inf / NaN in the group: poison all of S
        new_updates = jax.tree.map(lambda g, sel: (g * factor.astype(g.dtype)) if sel else g, updates, m)
        new_state = RelativeClipState(
            count=optax.safe_increment(state.count),
            clipped=clipped,
            grad_norm=g_norm.astype(jnp.float32),
            threshold=threshold.astype(jnp.float32),
            num_clipped=state.num_clipped + clipped.astype(jnp.int32),
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def sgd_wd_rgc(learning_rate: ScalarOrSchedule, weight_decay: ScalarOrSchedule, C: float = 2.0,
               mask: MaskOrFn = None) -> optax.GradientTransformation:
    """The paper's encoder optimizer: relative global clipping then SGD+WD (no momentum).

    ``mask`` selects both the clipped norm group and the decayed leaves."""
    return optax.chain(relative_global_clip(learning_rate, weight_decay, C=C, mask=mask),
                       sgd_wd(learning_rate, weight_decay, mask=mask))


def clip_stats(opt_state) -> Optional[RelativeClipState]:
    """Find the (first) :class:`RelativeClipState` inside an optax state tree, or None."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, RelativeClipState))
             if isinstance(s, RelativeClipState)]
    return found[0] if found else None


def exponential_lr(learning_rate: float, weight_decay: float, as_stated: bool = False) -> Schedule:
    """Optax schedule eta_t = eta (1 - eta lambda)^(-2t-1) (exact, same x(0)) or, with
    ``as_stated=True``, the talk's eta (1 - eta lambda)^(-2t) (needs x(0) scaled by
    sqrt(1 - eta lambda)); see :func:`scaleinv.theory.exp_lr_schedule`."""
    _check_positive("learning_rate", learning_rate)
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    traced = isinstance(learning_rate, jax.core.Tracer) or isinstance(weight_decay, jax.core.Tracer)
    if not traced and not learning_rate * weight_decay < 1:   # traced values: checked by the caller
        raise ValueError(f"learning_rate * weight_decay must be < 1, got {learning_rate * weight_decay}")
    offset = 0.0 if as_stated else 1.0

    def schedule(count):
        t = jnp.asarray(count, jnp.result_type(float))
        return learning_rate * (1.0 - learning_rate * weight_decay) ** (-2.0 * t - offset)

    return schedule
