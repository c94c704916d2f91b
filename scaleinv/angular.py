"""Angular-update and norm diagnostics per parameter group, per layer (leaf) and per neuron (row).

For weights x_t -> x_{t+1} the angular update of a group S is

    angle_S = angle(x_t[S], x_{t+1}[S]) = 2 atan2(||a - b||, ||a + b||),  a, b = unit vectors,

(accurate for tiny angles, unlike arccos of a cosine near 1), with x[S] the concatenation of the
group's leaves. A *neuron* is a row ``x.reshape(x.shape[0], -1)[i]`` of a leaf with ndim >= 2
(an output feature of a Dense / conv kernel stored output-first; pass ``neuron_axis`` for
kernels stored input-first such as flax ``Dense`` (in, out): ``neuron_axis=-1``).

Everything is jit-able and O(#params) (one pass of elementwise ops and reductions), so it can
be logged every step; the per-neuron statistics are reduced to (mean, rms, min, max) per leaf.
Kosson et al.'s (ICML 2024) equilibrium predictions are RMS-type, so compare them with ``rms``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp

from scaleinv.diagnostics import angular_update, path_name, tree_norm

__all__ = [
    "neuron_rows",
    "neuron_angles",
    "neuron_norms",
    "leaf_angle",
    "group_angles",
    "angular_summary",
    "path_name",
]


def neuron_rows(x, neuron_axis: int = 0):
    """The leaf as a (neurons, fan) matrix: ``neuron_axis`` moved first, the rest flattened."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"per-neuron statistics need a leaf with ndim >= 2, got shape {x.shape}")
    return jnp.moveaxis(x, neuron_axis, 0).reshape(x.shape[neuron_axis], -1)


def _angle_rows(a, b):
    na = jnp.linalg.norm(a, axis=-1, keepdims=True)
    nb = jnp.linalg.norm(b, axis=-1, keepdims=True)
    ua, ub = a / na, b / nb
    return 2.0 * jnp.arctan2(jnp.linalg.norm(ua - ub, axis=-1), jnp.linalg.norm(ua + ub, axis=-1))


def neuron_angles(old, new, neuron_axis: int = 0) -> jax.Array:
    """angle(w_i(t), w_i(t+1)) for every neuron (row) i of one leaf, shape (neurons,)."""
    return _angle_rows(neuron_rows(old, neuron_axis), neuron_rows(new, neuron_axis))


def neuron_norms(x, neuron_axis: int = 0) -> jax.Array:
    """||w_i|| for every neuron (row) i of one leaf, shape (neurons,)."""
    return jnp.linalg.norm(neuron_rows(x, neuron_axis), axis=-1)


def leaf_angle(old, new) -> jax.Array:
    """angle(x_t, x_{t+1}) of one whole leaf (layer)."""
    return _angle_rows(jnp.ravel(old)[None], jnp.ravel(new)[None])[0]


def group_angles(old, new, masks: Dict[str, Any]) -> Dict[str, jax.Array]:
    """angle and norm of each named group (bool-mask pytrees, e.g. from
    :func:`scaleinv.diagnostics.group_masks_by_prefix`): {name: angle}, {name + '/norm': ||x_{t+1}||}."""
    out = {}
    for name, m in masks.items():
        out[name] = angular_update(old, new, m)
        out[name + "/norm"] = tree_norm(new, m)
    return out


def angular_summary(old, new, masks: Optional[Dict[str, Any]] = None, per_neuron: bool = True,
                    neuron_axis: int = 0, min_ndim: int = 2) -> Dict[str, jax.Array]:
    """Every angular diagnostic of one step as a flat dict of scalars (jit-able).

    Keys: ``model/angle``, ``model/norm`` (whole tree); ``group/<name>/angle|norm`` for
    ``masks``; ``layer/<path>/angle|norm`` for every leaf; and, for leaves with
    ``ndim >= min_ndim`` when ``per_neuron``, ``neuron/<path>/angle_mean|angle_rms|angle_min|
    angle_max|norm_mean|norm_min|norm_max``. Angles in radians; norms of ``new`` (x_{t+1}).
    """
    out = {"model/angle": angular_update(old, new), "model/norm": tree_norm(new)}
    for name, v in group_angles(old, new, masks or {}).items():
        if name.endswith("/norm"):
            out[f"group/{name}"] = v
        else:
            out[f"group/{name}/angle"] = v
    flat_old = jax.tree_util.tree_flatten_with_path(old)[0]
    flat_new = jax.tree.leaves(new)
    for (path, a), b in zip(flat_old, flat_new):
        name = path_name(path) or "leaf"
        out[f"layer/{name}/angle"] = leaf_angle(a, b)
        out[f"layer/{name}/norm"] = jnp.linalg.norm(jnp.ravel(b))
        if per_neuron and jnp.ndim(a) >= min_ndim:
            ang = neuron_angles(a, b, neuron_axis)
            nrm = neuron_norms(b, neuron_axis)
            out[f"neuron/{name}/angle_mean"] = jnp.mean(ang)
            out[f"neuron/{name}/angle_rms"] = jnp.sqrt(jnp.mean(jnp.square(ang)))
            out[f"neuron/{name}/angle_min"] = jnp.min(ang)
            out[f"neuron/{name}/angle_max"] = jnp.max(ang)
            out[f"neuron/{name}/norm_mean"] = jnp.mean(nrm)
            out[f"neuron/{name}/norm_min"] = jnp.min(nrm)
            out[f"neuron/{name}/norm_max"] = jnp.max(nrm)
    return out
