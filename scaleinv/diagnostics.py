"""Per-step diagnostics of scale-invariant training, jit-friendly.

For a parameter group S (a bool mask pytree; default all leaves):

* ||x_S||, ||g_S||                           norms of parameters and gradient
* eta / ||x_S||^2                            effective LR (talk, "Existing Analysis ...")
* angle(x_t, x_{t+1}) = arccos(<x_t, x_{t+1}> / (||x_t|| ||x_{t+1}||))   angular update (rad)
* clip fired                                 from :class:`scaleinv.optim.RelativeClipState`
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp

from scaleinv.optim import clip_stats, masked_tree_norm

__all__ = ["tree_norm", "tree_inner", "angular_update", "step_diagnostics", "group_masks_by_prefix", "path_name"]


def tree_norm(tree, mask=None) -> jax.Array:
    """Global l2 norm over the leaves selected by ``mask``."""
    return masked_tree_norm(tree, mask)


def tree_inner(a, b, mask=None) -> jax.Array:
    """sum over selected leaves of <a_leaf, b_leaf>."""
    if mask is None:
        mask = jax.tree.map(lambda _: True, a)
    terms = jax.tree.map(lambda u, v, m: jnp.vdot(u, v) if m else jnp.zeros((), jnp.result_type(u)),
                         a, b, mask)
    return sum(jax.tree.leaves(terms), jnp.zeros(()))


def angular_update(old, new, mask=None) -> jax.Array:
    """angle(x_t, x_{t+1}) in radians over the group ``mask``.

    Computed as 2 atan2(||a - b||, ||a + b||) with a, b the unit vectors, which is accurate for
    tiny angles (arccos of a cosine near 1 is not).
    """
    na, nb = tree_norm(old, mask), tree_norm(new, mask)
    if mask is None:
        mask = jax.tree.map(lambda _: True, old)
    diff = jax.tree.map(lambda u, v, m: (u / na - v / nb) if m else jnp.zeros_like(u), old, new, mask)
    summ = jax.tree.map(lambda u, v, m: (u / na + v / nb) if m else jnp.zeros_like(u), old, new, mask)
    return 2.0 * jnp.arctan2(tree_norm(diff), tree_norm(summ))


def step_diagnostics(params, new_params, grads, learning_rate, opt_state=None, mask=None
                     ) -> Dict[str, jax.Array]:
    """All per-step diagnostics for one group as a dict of scalars (jit-able)."""
    x_norm = tree_norm(params, mask)
    out = {
        "x_norm": x_norm,
        "grad_norm": tree_norm(grads, mask),
        "lr_eff": jnp.asarray(learning_rate) / x_norm**2,
        "angular_update": angular_update(params, new_params, mask),
    }
    cs = clip_stats(opt_state) if opt_state is not None else None
    if cs is not None:
        out["clipped"] = cs.clipped
    return out


def group_masks_by_prefix(params, depth: int = 1) -> Dict[str, Any]:
    """One bool mask per parameter group, grouping leaves by the first ``depth`` keys of their
    path (e.g. depth=1: per top-level submodule; depth=2: per layer)."""
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    names = sorted({path_name(p[:depth]) for p in paths})
    masks = {}
    for name in names:
        masks[name] = jax.tree_util.tree_map_with_path(lambda p, _: path_name(p[:depth]) == name, params)
    return masks


def path_name(path) -> str:
    """'a/b/0' style name of a pytree key path (dict keys, attribute names, sequence indices)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)
