"""Property-testing helpers for torch modules: hypothesis strategies and assertions, the twins of
:mod:`scaleinv.testing` (``hypothesis`` and ``pytest`` are test-time dependencies)::

    from hypothesis import given
    from scaleinv.torch.testing import assert_homogeneous, assert_scale_invariant_loss, params_like

    @given(p=params_like(model))
    def test_encoder_is_scale_invariant(p):
        assert_homogeneous(model, 0, group="encoder", inputs=(x,), params=p)

Math (f of the parameters x, S a group of parameters, see :mod:`scaleinv.torch.homogeneity`):

* :func:`assert_homogeneous`: f(c x_S, x_rest) = c^k f(x) for every c in ``scales`` (relative
  residual <= rtol) and the log-log fitted degree rounds to k;
* :func:`assert_euler_identity`: <x_S, grad_S f(x)> = k f(x) (talk, "Ingredient 1");
* :func:`assert_scale_invariant_loss`: k = 0, Euler's identity <x_S, grad_S L> = 0 and
  grad_S L (-1)-homogeneous;
* :func:`assert_signature`: a block's Table-2 "(input degree; output degree)" signature
  (:func:`scaleinv.torch.audit.block_signature`).

Default tolerances follow the dtype as in :mod:`scaleinv.testing`: rtol 1e-4 in float32, 1e-9 in
float64 for values; 1e-3 / 1e-7 for the gradient checks. The dtype-independent strategies
(``scales``, ``scale_lists``, ``degrees``) are the JAX module's own.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from hypothesis import strategies as st

from scaleinv.testing import assert_group_degrees, degrees, scale_lists, scales
from scaleinv.torch.homogeneity import (DEFAULT_SCALES, GroupSpec, Params, as_function, estimate_degree,
                                        euler_residual, gradient_homogeneity_residual, module_params, select)

__all__ = ["scales", "scale_lists", "degrees", "params_like", "group_names",
           "assert_homogeneous", "assert_euler_identity", "assert_scale_invariant_loss", "assert_signature",
           "value_rtol", "grad_rtol"]


# ------------------------------------------------------------------------------ strategies
def _params_of(module_or_params) -> Params:
    if isinstance(module_or_params, torch.nn.Module):
        return module_params(module_or_params)
    return {k: torch.as_tensor(v).detach() for k, v in dict(module_or_params).items()}


def params_like(module_or_params, std: Union[float, st.SearchStrategy[float], None] = None,
                relative: bool = False) -> st.SearchStrategy[Params]:
    """Random parameter dicts with the names, shapes and dtypes of a module's parameters (or of a
    dict name -> tensor). ``relative=False``: N(0, std^2) entries with std drawn log-uniformly in
    [1e-2, 1e2] unless given; ``relative=True``: x + std * N(0, 1) * rms(x) (std default 0.1),
    keeping e.g. LayerNorm gains near 1. Built from a drawn seed (cheap shrinking)."""
    base = _params_of(module_or_params)
    if std is None:
        std_st = st.just(0.1) if relative else scales()
    else:
        std_st = std if isinstance(std, st.SearchStrategy) else st.just(float(std))

    @st.composite
    def build(draw):
        rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
        s = draw(std_st)
        out = {}
        for k, v in base.items():
            a = v.double().cpu().numpy()
            noise = rng.standard_normal(a.shape)
            if relative:
                rms = float(np.sqrt(np.mean(a**2))) if a.size else 1.0
                new = a + s * (rms or 1.0) * noise
            else:
                new = s * noise
            out[k] = torch.as_tensor(new, dtype=v.dtype)
        return out

    return build()


def group_names(module_or_params, min_selected: int = 1) -> st.SearchStrategy[list]:
    """Random non-empty subsets (lists, in parameter order) of the parameter names."""
    names = list(_params_of(module_or_params))
    if not 1 <= min_selected <= len(names):
        raise ValueError(f"min_selected must be in [1, {len(names)}], got {min_selected}")
    return (st.lists(st.booleans(), min_size=len(names), max_size=len(names))
            .filter(lambda bs: sum(bs) >= min_selected)
            .map(lambda bs: [n for n, b in zip(names, bs) if b]))


# ------------------------------------------------------------------------------ assertions
def _is64(params: Params) -> bool:
    return any(v.dtype == torch.float64 for v in params.values())


def value_rtol(params: Params) -> float:
    """Default value tolerance: 1e-9 (float64 parameters), 1e-4 otherwise."""
    return 1e-9 if _is64(params) else 1e-4


def grad_rtol(params: Params) -> float:
    """Default Euler / gradient tolerance: 1e-7 (float64), 1e-3 otherwise."""
    return 1e-7 if _is64(params) else 1e-3


def _setup(module_or_fn, params, inputs, kwargs):
    if params is None:
        if not isinstance(module_or_fn, torch.nn.Module):
            raise ValueError("params= is required when a function (not an nn.Module) is checked")
        params = module_params(module_or_fn)
    return as_function(module_or_fn, inputs, kwargs), dict(params)


def _groups(group) -> Mapping[str, GroupSpec]:
    if isinstance(group, Mapping):
        return dict(group)
    return {"all" if group is None else str(group): group}


def assert_homogeneous(module_or_fn: Union[torch.nn.Module, Callable[[Params], Any]], degree, group=None, *,
                       inputs=(), params: Optional[Params] = None, kwargs=None,
                       scales: Sequence[float] = DEFAULT_SCALES, rtol: Optional[float] = None) -> None:
    """Assert f(c x_S, x_rest) = c^degree f(x) for the group S.

    module_or_fn: an ``nn.Module`` called as ``module(*inputs, **kwargs)`` with (scaled)
    ``params`` (default: its own parameters) through ``torch.func.functional_call``, or a
    function ``params -> output``. group: a group spec (None = all parameters, a name / prefix,
    a list of them, a callable name -> bool) or a dict label -> spec for several groups, with
    ``degree`` one int or a dict label -> int. Raises AssertionError naming each failing group,
    the fitted slope and the residual."""
    fn, params = _setup(module_or_fn, params, inputs, kwargs)
    rtol = value_rtol(params) if rtol is None else rtol
    gs = _groups(group)
    for spec in gs.values():
        select(params, spec)  # a group that selects nothing is a usage error (ValueError), not a failure
    assert_group_degrees(gs, degree, lambda spec: estimate_degree(fn, params, group=spec, scales=scales, rtol=rtol),
                         rtol)


def assert_euler_identity(module_or_fn, degree: float, group: GroupSpec = None, *, inputs=(),
                          params: Optional[Params] = None, kwargs=None, rtol: Optional[float] = None) -> None:
    """Assert <x_S, grad_S f(x)> = degree * f(x) for a scalar-valued module / function."""
    fn, params = _setup(module_or_fn, params, inputs, kwargs)
    rtol = grad_rtol(params) if rtol is None else rtol
    r = euler_residual(fn, params, degree, group)
    if not r <= rtol:
        raise AssertionError(f"Euler identity <x, grad f> = {degree} f fails: relative residual {r:.3g} > {rtol:g}")


def assert_scale_invariant_loss(module_or_fn, group: GroupSpec = None, *, inputs=(),
                                params: Optional[Params] = None, kwargs=None,
                                scales: Sequence[float] = DEFAULT_SCALES, rtol: Optional[float] = None,
                                grad_tol: Optional[float] = None) -> None:
    """Assert L(c x_S, x_rest) = L(x), <x_S, grad_S L> = 0 and grad_S L(c x) = grad_S L(x) / c."""
    fn, params = _setup(module_or_fn, params, inputs, kwargs)
    assert_homogeneous(fn, 0, group, params=params, scales=scales, rtol=rtol)
    gt = grad_rtol(params) if grad_tol is None else grad_tol
    assert_euler_identity(fn, 0.0, group, params=params, rtol=gt)
    r = gradient_homogeneity_residual(fn, params, 0.0, group, scales)
    if not r <= gt:
        raise AssertionError(f"gradient is not (-1)-homogeneous: max_c ||g(cx) - g(x)/c|| / ||g(x)/c|| = "
                             f"{r:.3g} > {gt:g}")


def assert_signature(block: torch.nn.Module, *inputs, expected: str, group: GroupSpec = None,
                     input_degrees=(0, 1, 2, 3), scales: Sequence[float] = DEFAULT_SCALES,
                     rtol: Optional[float] = None) -> None:
    """Assert a torch block's Table-2 signature, e.g. ``expected="(x;x+1)"`` for a bias-free
    ``nn.Linear`` (:func:`scaleinv.torch.audit.block_signature`)."""
    from scaleinv.torch.audit import block_signature

    sig = block_signature(block, *inputs, group=group, input_degrees=input_degrees, scales=scales, rtol=rtol)
    got = sig.notation()
    if got != expected:
        detail = ", ".join(f"x={x}: {f.label()} (slope {f.slope:.3g}, residual {f.residual:.2g})"
                           for x, f in sig.fits.items())
        raise AssertionError(f"signature {got!r} != expected {expected!r} ({detail})")
