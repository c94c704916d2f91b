"""Local Table-2 signatures of one block: :class:`Signature`, :func:`block_signature`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaleinv.audit.fitting import Fit, _float_leaves, _is_float, default_rtol
from scaleinv.homogeneity import DEFAULT_SCALES, estimate_degree

DEFAULT_INPUT_DEGREES = (0, 1, 2, 3)


@dataclass
class Signature:
    """Local Table-2 signature of a block: fits[x] = degree of the output when every float
    input is x-homogeneous (x in input_degrees); n_inputs float inputs (0: data-only block)."""

    n_inputs: int
    fits: Dict[int, Fit]

    @property
    def valid(self) -> List[int]:
        return [x for x, f in self.fits.items() if f.homogeneous]

    @property
    def homogeneous_somewhere(self) -> bool:
        return bool(self.valid)

    def output_degree(self, x: int) -> Optional[int]:
        f = self.fits.get(x)
        return f.degree if f is not None and f.homogeneous else None

    def notation(self) -> str:
        """Paper notation: "(x;x+1)", "(x;0)", "(0;2)", "(x,x,x;x+2)", or "not homogeneous"."""
        xs, valid = sorted(self.fits), self.valid
        if self.n_inputs == 0:
            f = self.fits[xs[0]]
            return f"(0;{f.degree})" if f.homogeneous else "zero output" if f.status == "zero" else "not homogeneous"
        if not valid:
            if all(f.status == "zero" for f in self.fits.values()):
                return "zero output"
            return "not homogeneous"

        def ins(x):
            return ",".join([str(x)] * self.n_inputs)

        ys = {x: self.fits[x].degree for x in valid}
        if len(valid) >= 2:
            offsets = {ys[x] - x for x in valid}
            consts = set(ys.values())
            pattern = None
            if len(consts) == 1:
                pattern = f"({ins('x')};{next(iter(consts))})"
            elif len(offsets) == 1:
                d = next(iter(offsets))
                pattern = f"({ins('x')};x{'+' if d > 0 else '-'}{abs(d)})" if d else f"({ins('x')};x)"
            if pattern is not None:
                return pattern if valid == xs else f"{pattern} for x in {{{','.join(map(str, valid))}}}"
        return " ".join(f"({ins(x)};{ys[x]})" for x in valid)

    def as_dict(self):
        return {"notation": self.notation(), "n_inputs": self.n_inputs,
                "fits": {str(x): f.as_dict() for x, f in self.fits.items()}}


def _signature_problem(fn: Callable, variables, inputs: Sequence[Any], var_mask, input_degrees,
                       scales, rtol, jit: bool = True, cache: Optional[JitCache] = None, cache_key=None):
    """Build p (pytree fed to estimate_degree) and g(p) = fn(vars, inputs scaled by probe**x).

    p = {"vars": variables, "probe": 1, "x": x, "inputs": array inputs}; the mask scales the
    masked variables and the probe (so probe = c), never x or the stored inputs. Floating inputs
    are multiplied by probe**x = c^x, other arrays (token ids) are passed unchanged. ``cache``
    maps ``cache_key`` to an already jitted g (identical blocks, e.g. repeated layers, compile once).
    """
    arr_pos = [i for i, a in enumerate(inputs) if isinstance(a, (jax.Array, np.ndarray))]
    is_float = [_is_float(inputs[i]) for i in arr_pos]
    float_inputs = [inputs[i] for i, f in zip(arr_pos, is_float) if f]
    dtype = jnp.result_type(*float_inputs) if float_inputs else jnp.float32
    p = {"vars": variables, "probe": jnp.ones((), dtype), "x": jnp.zeros((), dtype),
         "inputs": [inputs[i] for i in arr_pos]}
    mask = {"vars": var_mask, "probe": True, "x": False, "inputs": [False] * len(arr_pos)}
    static = [None if i in arr_pos else a for i, a in enumerate(inputs)]

    def g(q):
        args = list(static)
        factor = jnp.power(q["probe"], q["x"])
        for i, f, a in zip(arr_pos, is_float, q["inputs"]):
            args[i] = a * factor.astype(a.dtype) if f else a
        return fn(q["vars"], *args)

    if jit:
        if cache is not None and cache_key is not None:
            key = (cache_key, tuple(is_float), tuple(repr(a) for a in static),
                   jax.tree.structure(p), tuple((l.shape, str(l.dtype)) for l in jax.tree.leaves(p)))
            g = cache.jit(key, g)
        else:
            g = jax.jit(g)
    return p, mask, g, len(float_inputs)


class JitCache:
    """Compiled signature functions of identical block calls (same class, attributes, method,
    input shapes), so that repeated layers compile once; at most ``max_entries`` functions (the
    store is emptied when full)."""

    def __init__(self, max_entries: int = 512):
        self.max_entries = max_entries
        self._store: Dict[Any, Callable] = {}

    def jit(self, key, fn: Callable) -> Callable:
        """``jax.jit(fn)`` compiled once per ``key``."""
        if key not in self._store:
            if len(self._store) >= self.max_entries:
                self._store.clear()
            self._store[key] = jax.jit(fn)
        return self._store[key]

    def __len__(self) -> int:
        return len(self._store)


def _module_key(call) -> Any:
    """Hashable description of a module call (class, attributes, method, kwargs) for the jit cache."""
    m = call.module
    try:
        attrs = tuple((f.name, repr(getattr(m, f.name))) for f in dataclasses.fields(m)
                      if f.name not in ("parent", "name"))
    except TypeError:
        return None
    return (type(m), attrs, call.method, repr(sorted(call.kwargs.items())))


class _NonFinite(Exception):
    pass


def _fit_signature(p, mask, g, n_inputs, leaf_index, input_degrees, scales, rtol_arg) -> Signature:
    fits = {}
    degrees = [0] if n_inputs == 0 else list(input_degrees)
    for x in degrees:
        q = dict(p, x=jnp.asarray(float(x), p["x"].dtype))

        def fn(qq, _i=leaf_index):
            y = np.asarray(_float_leaves(g(qq))[_i][1])
            if not np.all(np.isfinite(y)):
                raise _NonFinite()
            return y

        try:
            y1 = np.asarray(fn(q))
        except _NonFinite:
            fits[x] = Fit("nonfinite", None, float("nan"), float("inf"), float("inf"), rtol_arg or 0.0)
            continue
        rtol = rtol_arg if rtol_arg is not None else default_rtol(y1.dtype)
        if float(np.linalg.norm(y1.astype(np.float64))) == 0.0:
            fits[x] = Fit("zero", None, float("nan"), 0.0, 0.0, rtol)
            continue
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                res = estimate_degree(fn, q, mask=mask, scales=scales, rtol=rtol)
            fits[x] = Fit.from_result(res, rtol)
        except _NonFinite:   # inf/NaN at some c (overflow, 0/0): not homogeneous there
            fits[x] = Fit("nonfinite", None, float("nan"), float("inf"), float("inf"), rtol)
    return Signature(n_inputs=n_inputs, fits=fits)


def block_signature(block, params, *inputs, mask=None, input_degrees=DEFAULT_INPUT_DEGREES,
                    scales=DEFAULT_SCALES, rtol=None, output_index: int = 0, method=None,
                    jit: bool = True, **kwargs) -> Signature:
    """Table-2 signature of one block (see the module docstring for the measurement).

    ``block``: a flax linen Module (``params`` is then its variables dict, e.g. {"params": ...},
    applied as ``block.apply(params, *inputs, method=method, **kwargs)``) or a function
    ``block(params, *inputs)``. ``mask``: bool pytree over ``params`` selecting the group S
    (default: every leaf of the "params" collection, or every leaf for a plain function).
    ``output_index``: which float leaf of the output to fit. ``jit=False`` evaluates eagerly
    (faster for tiny blocks, where compiling costs more than the ~30 evaluations).

    >>> sig = block_signature(nn.Dense(4, use_bias=False), variables, x)   # doctest: +SKIP
    >>> sig.notation()                                                      # doctest: +SKIP
    '(x;x+1)'
    """
    if isinstance(block, nn.Module):
        def fn(v, *args):
            return block.apply(v, *args, method=method, **kwargs)
        if mask is None:
            mask = {col: jax.tree.map(lambda _: col == "params", tree) for col, tree in params.items()}
    else:
        fn = (lambda v, *args: block(v, *args, **kwargs)) if kwargs else block
        if mask is None:
            mask = jax.tree.map(lambda _: True, params)
    p, m, g, n = _signature_problem(fn, params, inputs, mask, input_degrees, scales, rtol, jit=jit)
    return _fit_signature(p, m, g, n, output_index, input_degrees, scales, rtol)


def _primitives(jaxpr) -> set:
    """Names of all primitives in a (closed) jaxpr, recursing into sub-jaxprs (pjit, custom_jvp)."""
    found = set()
    stack = [jaxpr]
    while stack:
        j = stack.pop()
        j = getattr(j, "jaxpr", j)
        for eqn in getattr(j, "eqns", ()):
            found.add(eqn.primitive.name)
            for v in eqn.params.values():
                for w in (v if isinstance(v, (list, tuple)) else (v,)):
                    if hasattr(w, "eqns") or hasattr(w, "jaxpr"):
                        stack.append(w)
    return found

