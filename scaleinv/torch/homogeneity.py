"""Homogeneity of torch modules and functions in a group of their parameters.

f is k-homogeneous in the parameter group S  <=>  f(c x_S, x_rest) = c^k f(x)  for all c > 0
(talk, "Our Hypothesis: k-homogeneity in Architecture"). As in :mod:`scaleinv.homogeneity`
(whose log-log fit :func:`scaleinv.homogeneity.fit_log_log` and result type are reused here):

* the degree is estimated from a log-log fit of ||f(c x)|| against c and accepted only when
  max_c ||f(c x) - c^K f(x)|| / ||c^K f(x)|| <= rtol (K the rounded slope);
* Euler's theorem <x_S, grad_S f(x)> = k f(x) (talk, "Ingredient 1");
* grad_S f is (k-1)-homogeneous in S.

A module is evaluated at scaled parameters with ``torch.func.functional_call`` (the module's own
parameters are never modified). Parameters are a dict name -> tensor (``named_parameters()``,
optionally plus buffers); a *group* selects names: None (all parameters), a name or prefix, a
list of names / prefixes, or a callable ``name -> bool``.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Union

import numpy as np
import torch

from scaleinv.homogeneity import DEFAULT_SCALES, HomogeneityResult, result_from_outputs
from scaleinv.torch.capture import float_tensors

__all__ = ["Params", "GroupSpec", "module_params", "select", "scale_params", "as_function", "flat",
           "estimate_degree", "euler_residual", "gradient_homogeneity_residual", "DEFAULT_SCALES"]

Params = Dict[str, torch.Tensor]
GroupSpec = Union[None, str, Sequence[str], Callable[[str], bool]]


def module_params(module: torch.nn.Module) -> Params:
    """The module's parameters as a detached dict name -> tensor (``named_parameters()``)."""
    return {k: v.detach() for k, v in module.named_parameters()}


def select(names, group: GroupSpec) -> list:
    """The names in ``names`` that belong to ``group`` (a name matches a prefix p when it equals
    p or starts with p + '.'). Raises ValueError when the group selects nothing."""
    names = list(names)
    if group is None:
        sel = names
    elif callable(group):
        sel = [n for n in names if group(n)]
    else:
        prefixes = [group] if isinstance(group, str) else list(group)
        sel = [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]
    if not sel:
        raise ValueError(f"group {group!r} selects no parameter; parameters: {names}")
    return sel


def scale_params(params: Params, c: float, names) -> Params:
    """params with the tensors named in ``names`` times c."""
    names = set(names)
    return {k: (v * c if k in names else v) for k, v in params.items()}


def as_function(module_or_fn, inputs=(), kwargs=None) -> Callable[[Params], object]:
    """params -> output: ``functional_call(module, params, inputs, kwargs)`` for a module (with
    its buffers), or the callable itself (``fn(params)``)."""
    kwargs = kwargs or {}
    if isinstance(module_or_fn, torch.nn.Module):
        module = module_or_fn
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)

        def fn(params):
            return torch.func.functional_call(module, params, inputs, kwargs)

        return fn
    if not callable(module_or_fn):
        raise TypeError(f"expected an nn.Module or a callable params -> output, got {type(module_or_fn).__name__}")
    return module_or_fn


def flat(y) -> np.ndarray:
    """Every floating tensor in the (nested) output as one float64 NumPy vector (HF
    ``ModelOutput``s, tuples, dicts and lists are walked; non-tensors are ignored)."""
    out = [t.detach().to(torch.float64).reshape(-1).cpu().numpy() for t in float_tensors(y)]
    if not out:
        raise ValueError("the output holds no floating-point tensor")
    return np.concatenate(out)


def estimate_degree(fn: Callable[[Params], object], params: Params, group: GroupSpec = None,
                    scales: Sequence[float] = DEFAULT_SCALES, rtol: float = 1e-4) -> HomogeneityResult:
    """Degree of ``fn`` (params -> tensor / nested output) in ``group``, with the log-log fit of
    :func:`scaleinv.homogeneity.fit_log_log` (same result type as the JAX
    :func:`scaleinv.homogeneity.estimate_degree`). Use rtol ~1e-4 in float32, ~1e-9 in float64."""
    scales = tuple(float(c) for c in scales)
    if len(scales) < 2 or any(c <= 0 for c in scales):
        raise ValueError(f"scales needs at least 2 values, all > 0, got {scales}")
    names = select(params, group)
    with torch.no_grad():
        y1 = flat(fn(params))
        ys = [flat(fn(scale_params(params, c, names))) for c in scales]
    return result_from_outputs(scales, y1, ys, rtol)


def _grads(fn, params, names):
    p = {k: (v.detach().clone().requires_grad_(True) if k in names else v) for k, v in params.items()}
    val = fn(p)
    if not (torch.is_tensor(val) and val.numel() == 1):
        raise ValueError("the Euler / gradient checks need a scalar-valued function (a loss)")
    gs = torch.autograd.grad(val, [p[k] for k in names], allow_unused=True)
    gs = [torch.zeros_like(p[k]) if g is None else g for k, g in zip(names, gs)]
    return float(val.detach()), gs


def euler_residual(fn: Callable[[Params], torch.Tensor], params: Params, k: float, group: GroupSpec = None) -> float:
    """|<x_S, grad_S f(x)> - k f(x)| / max(|f|, |k f|, ||x_S|| ||grad_S f||) for scalar ``fn``
    (the relative residual of :func:`scaleinv.homogeneity.euler_residual`)."""
    names = select(params, group)
    val, gs = _grads(fn, params, names)
    inner = float(sum(torch.sum(params[n].double() * g.double()) for n, g in zip(names, gs)))
    gx = float(np.sqrt(sum(float(torch.sum(g.double() ** 2)) for g in gs)))
    xx = float(np.sqrt(sum(float(torch.sum(params[n].double() ** 2)) for n in names)))
    denom = max(abs(val), abs(k * val), xx * gx, np.finfo(np.float64).tiny)
    return abs(inner - k * val) / denom


def gradient_homogeneity_residual(fn: Callable[[Params], torch.Tensor], params: Params, k: float,
                                  group: GroupSpec = None, scales: Sequence[float] = DEFAULT_SCALES) -> float:
    """max_c ||grad_S f(c x_S) - c^(k-1) grad_S f(x)|| / ||c^(k-1) grad_S f(x)||: zero iff grad_S f
    is (k-1)-homogeneous in S."""
    names = select(params, group)

    def g_of(p):
        return np.concatenate([g.detach().double().reshape(-1).numpy() for g in _grads(fn, p, names)[1]])

    g1 = g_of(params)
    n1 = np.linalg.norm(g1)
    if n1 == 0.0 or not np.isfinite(n1):
        raise ValueError("gradient is zero or not finite at params: pick another point")
    return max(float(np.linalg.norm(g_of(scale_params(params, c, names)) - c ** (k - 1) * g1) / (c ** (k - 1) * n1))
               for c in scales)
