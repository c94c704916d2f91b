"""jit + lax.scan training loop returning a :class:`Trace`; vmap it to sweep scales/seeds/LRs.

One step t (t = 0 .. steps-1), with key_t = fold_in(key, t):

    g_t = grad L_{gamma_t}(x_t);   (u_t, s_{t+1}) = opt.update(g_t, s_t, x_t);   x_{t+1} = x_t + u_t

and the trace records, at every step, L_{gamma_t}(x_t) (or ``eval_fn(x_t)`` if given),
||x_t||^2 and ||g_t|| over the group ``mask``, the angular update angle(x_t, x_{t+1}) and
whether relative global clipping fired. Call inside ``with jax.enable_x64(True):`` for the
float64 toy runs (the toy claims do); nothing here switches precision globally.

Every optimizer trajectory of the toy claims runs here (issue 27, "one runner"). The options a
claim may need, each general and tested in ``tests/toys/test_toys_run_options.py``:

* ``record(step: Step) -> pytree``: extra per-step arrays (``Trace.extra``) from the step's
  t, x_t, g_t, u_t, x_{t+1}, s_{t+1} and loss (per-group angles, norms, the iterates themselves);
* ``loss_takes_step=True``: the loss is ``loss_fn(x, key_t, t)``, a per-step loss schedule
  (a perturbation at one step, a changing target);
* ``active_steps = n`` (may be traced, per vmapped configuration): steps t >= n leave x and the
  optimizer state unchanged, so configurations with different horizons vmap together;
* ``Trace.final_state``: the optimizer state after the last step;
* :func:`oracle_loss`: a "loss" whose gradient is a given field exactly (toys defined by their
  gradient noise model rather than a loss).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from scaleinv.diagnostics import angular_update, tree_norm
from scaleinv.optim import clip_stats

__all__ = ["SWEEP_BATCH", "Step", "Trace", "oracle_loss", "run", "sweep"]

SWEEP_BATCH = 256   # default most configurations vectorised together by :func:`sweep`


class Trace(NamedTuple):
    """Per-step arrays (leading axis = step; extra leading axes under vmap)."""

    loss: jax.Array       # L(x_t) (or eval_fn(x_t))
    sq_norm: jax.Array    # ||x_t||^2 over the mask
    grad_norm: jax.Array  # ||g_t|| over the mask (before any clipping)
    angle: jax.Array      # angle(x_t, x_{t+1}) in radians over the mask
    clipped: jax.Array    # bool, relative global clipping fired at step t
    final: Any            # x_T
    extra: Any = None     # record(Step) per recorded step (None without ``record``)
    final_state: Any = None   # the optimizer state s_T after the last step


class Step(NamedTuple):
    """What ``record`` sees at step t (one step of :func:`run`)."""

    t: jax.Array          # the step index (int)
    x: Any                # x_t
    grad: Any             # g_t = grad L_{gamma_t}(x_t)
    update: Any           # u_t as returned by opt.update
    x_new: Any            # x_{t+1} (= x_t past ``active_steps``)
    state: Any            # s_{t+1}, the optimizer state after the update (= s_t past ``active_steps``)
    loss: jax.Array       # L_{gamma_t}(x_t), the value of loss_fn at x_t


def oracle_loss(grad_fn: Callable[..., Any]) -> Callable[..., jax.Array]:
    """The loss <stop_gradient(grad_fn(x, ...)), x> (summed over leaves): its gradient at x is
    ``grad_fn(x, ...)`` exactly (the cotangent 1.0 times the field), so a toy defined by its
    gradient (a noise model, a gradient with a hand-written rounding order) runs on :func:`run`.
    Extra arguments (key, and t with ``loss_takes_step``) are passed on. Its VALUE is not a loss:
    give ``eval_fn`` (or ignore ``Trace.loss``)."""
    def loss(x, *args):
        g = jax.lax.stop_gradient(grad_fn(x, *args))
        return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(x)))
    return loss


def run(loss_fn: Callable[..., jax.Array], opt: optax.GradientTransformation,
        params0, steps: int, key: jax.Array, mask=None,
        eval_fn: Optional[Callable[[Any], jax.Array]] = None, record_every: int = 1,
        record: Optional[Callable[[Step], Any]] = None, loss_takes_step: bool = False,
        active_steps=None) -> Trace:
    """Run ``steps`` optimizer steps of ``opt`` on ``loss_fn(params, key)`` from ``params0``.

    ``record_every = k`` records the trace at steps t = 0, k, 2k, ... only (``steps`` must be a
    multiple of k; the trace has steps / k entries, entry j describing step j k); the other
    steps run without computing or storing the trace. The iterates are the same for every k.

    ``record``: a function of the :class:`Step` returning a pytree of arrays, stored per
    recorded step in ``Trace.extra`` (leading axis = recorded step). ``loss_takes_step``: call
    ``loss_fn(params, key_t, t)`` (t the int step index) instead of ``loss_fn(params, key_t)``.
    ``active_steps``: an int (a traced one under vmap is fine); steps t >= active_steps keep
    x_{t+1} = x_t and s_{t+1} = s_t (the gradient is still evaluated and the trace recorded).
    ``Trace.final_state`` is the optimizer state after the last step.

    Pure and traceable: jit it, or vmap it over params0 / key / hyper-parameters that are
    closed over inside a wrapper (see :func:`sweep`).
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if int(record_every) != record_every or record_every < 1 or steps % record_every:
        raise ValueError(f"record_every must be a positive integer dividing steps ({steps}), "
                         f"got {record_every!r}")
    if record is not None and not callable(record):
        raise ValueError(f"record must be a function of a Step or None, got {record!r}")
    value_and_grad = jax.value_and_grad(loss_fn)
    grad = jax.grad(loss_fn)

    def args(t):
        k = jax.random.fold_in(key, t)
        return (k, t) if loss_takes_step else (k,)

    def advance(x, s, g, t):
        u, s_new = opt.update(g, s, x)
        x_new = optax.apply_updates(x, u)
        if active_steps is not None:
            live = t < active_steps
            x_new, s_new = jax.tree.map(lambda a, b: jnp.where(live, a, b), (x_new, s_new), (x, s))
        return u, x_new, s_new

    def step(carry, t):
        x, s = carry
        val, g = value_and_grad(x, *args(t))
        u, x_new, s_new = advance(x, s, g, t)
        cs = clip_stats(s_new)
        rec = Trace(
            loss=val if eval_fn is None else eval_fn(x),
            sq_norm=tree_norm(x, mask) ** 2,
            grad_norm=tree_norm(g, mask),
            angle=angular_update(x, x_new, mask),
            clipped=cs.clipped if cs is not None else jnp.zeros((), bool),
            final=None,
            extra=None if record is None else record(Step(t, x, g, u, x_new, s_new, val)),
        )
        return (x_new, s_new), rec

    carry0 = (params0, opt.init(params0))
    if record_every == 1:
        (x_final, s_final), tr = jax.lax.scan(step, carry0, jnp.arange(steps))
        return tr._replace(final=x_final, final_state=s_final)

    def silent(carry, t):   # the same update, no trace
        x, s = carry
        _, x_new, s_new = advance(x, s, grad(x, *args(t)), t)
        return (x_new, s_new), None

    def block(carry, t0):
        carry, rec = step(carry, t0)
        carry, _ = jax.lax.scan(silent, carry, t0 + jnp.arange(1, record_every), unroll=True)
        return carry, rec

    (x_final, s_final), tr = jax.lax.scan(block, carry0, jnp.arange(0, steps, record_every))
    return tr._replace(final=x_final, final_state=s_final)


def sweep(make_opt: Callable[..., optax.GradientTransformation], loss_fn, params0, steps: int,
          key: Optional[jax.Array], hparams: dict, mask=None, eval_fn=None, record_every: int = 1,
          batch_size: Optional[int] = SWEEP_BATCH, keys: Optional[jax.Array] = None,
          record: Optional[Callable[[Step], Any]] = None, loss_takes_step: bool = False) -> Trace:
    """vmap :func:`run` over a batch of configurations in ONE jitted call.

    ``params0``: a pytree whose leaves have a leading batch axis B; ``hparams``: dict of arrays
    of shape (B,) passed as keywords to ``make_opt(**h)`` inside the vmap (so each config gets
    its own optimizer); ``key`` is split into one key per configuration, or ``keys`` (a batch of
    B keys, ``key=None``) gives each configuration its own key as is, e.g. to run the
    configurations of several smaller sweeps as one (same keys, same iterates);
    ``record_every``, ``record`` and ``loss_takes_step`` as in :func:`run`.

    ``batch_size``: at most this many configurations are vectorised together; a larger B runs as
    ``jax.lax.map(..., batch_size=batch_size)`` (vmapped chunks one after another, still one
    jitted call); ``None`` vmaps all B at once. Chunking keeps a step's working set in the core's
    cache: on the 1024-configuration normalised-MF sweep of ``scaleinv bench`` (B1), 256-config
    chunks were ~2x faster per configuration-step than one 1024-wide vmap (the per-config cost
    grew with B: 52 / 77 / 197 ns at B = 256 / 1024 / 4096, full trace). Each configuration runs
    the same steps; only floating-point rounding can differ between chunk widths (XLA vectorises
    differently): 1e-14 relative on that sweep's losses.
    """
    n = jax.tree.leaves(params0)[0].shape[0]
    for name, v in hparams.items():
        if jnp.shape(v) != (n,):
            raise ValueError(f"hparams[{name!r}] must have shape ({n},) to match params0, "
                             f"got {jnp.shape(v)}")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if (key is None) == (keys is None):
        raise ValueError("give exactly one of key (split per configuration) and keys (one per configuration)")
    if keys is None:
        keys = jax.random.split(key, n)
    elif jnp.shape(keys)[0] != n:
        raise ValueError(f"keys must have a leading axis of {n} to match params0, got shape {jnp.shape(keys)}")
    return _sweep_fn(make_opt, loss_fn, steps, mask, eval_fn, record_every, batch_size, record, loss_takes_step)(
        params0, keys, {k: jnp.asarray(v) for k, v in hparams.items()})


def _sweep_fn(make_opt, loss_fn, steps, mask, eval_fn, record_every, batch_size=SWEEP_BATCH, record=None,
              loss_takes_step=False):
    """The jitted vmapped runner; one per (make_opt, loss_fn, steps, mask, eval_fn, record_every, record, ...)
    for a hashable mask (None, usually), so repeated sweeps of the same functions (an LR grid run
    from several inits) trace and compile once; jit recompiles by itself
    for new shapes, dtypes or x64 mode. The cache holds the functions themselves, never their id."""
    try:
        return _cached_sweep_fn(make_opt, loss_fn, steps, mask, eval_fn, record_every, batch_size, record,
                                loss_takes_step)
    except TypeError:   # an unhashable mask (a dict pytree): no reuse
        return _build_sweep_fn(make_opt, loss_fn, steps, mask, eval_fn, record_every, batch_size, record,
                               loss_takes_step)


def _build_sweep_fn(make_opt, loss_fn, steps, mask, eval_fn, record_every, batch_size=SWEEP_BATCH, record=None,
                    loss_takes_step=False):
    def one(p, k, h):
        return run(loss_fn, make_opt(**h), p, steps, k, mask, eval_fn, record_every, record=record,
                   loss_takes_step=loss_takes_step)

    @jax.jit
    def go(p0, ks, hp):
        if batch_size is None or ks.shape[0] <= batch_size:
            return jax.vmap(one)(p0, ks, hp)
        return jax.lax.map(lambda a: one(*a), (p0, ks, hp), batch_size=batch_size)

    return go


_cached_sweep_fn = functools.lru_cache(maxsize=32)(_build_sweep_fn)
