"""Homogeneity audit of a JAX/flax model: degree of the loss and of every block, per parameter group.

Definitions (talk, "k-homogeneity in Architecture"; paper Table 2). A tensor t(x) of the
parameters x is k-homogeneous in the group S if t(c x_S, x_rest) = c^k t(x) for all c > 0.
A block B (one flax module call) with parameters theta_B maps inputs h_1..h_m to
o = B(theta_B; h_1, ..., h_m). Its Table-2 signature "(x_1, ..., x_m; y)" means: if every h_i is
x_i-homogeneous in S then o is y-homogeneous in S. E.g. linear (x; x+1), LayerNorm without affine
(x; 0), adding a bias (1; 1), 2-layer ReLU feed-forward (0; 2), SI attention (x,x,x; x+2),
PreNorm encoder layer (2; 2).

Two measurements, both with :func:`scaleinv.homogeneity.estimate_degree`'s method (evaluate at
several c spanning orders of magnitude, fit log||y_c|| = k log c + b, round k to an integer K,
accept only if the relative residual max_c ||y_c - c^K y_1|| / ||c^K y_1|| <= rtol; otherwise
the tensor is reported "not homogeneous" with its residual, never with a misleading degree):

* **Local signature** of a block (what Table 2 states). Take the block's concrete inputs h_i from
  one forward pass. For each trial input degree x in ``input_degrees`` feed the block an input
  that is *exactly* x-homogeneous, i.e. the upstream tensor scaled by c^x whenever the parameters
  are scaled by c, and estimate the degree of

      g_x(c) = B(c theta_{B,S}, theta_{B,rest}; c^x h_1, ..., c^x h_m)

  in c. The signature lists the x for which g_x is homogeneous and its degree y(x): "(x;x+1)" if
  y(x) = x + 1 for every trial x, "(x;1)" if y is constant, "(0;2)" if only x = 0 works, "not
  homogeneous" if none does. Inputs that are not floating point (token ids) are data:
  parameter-independent, degree 0, never scaled ("input (0;1)": tokens -> E[tok] + P[pos]).
* **In situ** degrees. Run the user's whole ``apply_fn(params, batch)`` with the parameters of a
  group S scaled by c, for every group and c, capturing the inputs and outputs of every flax
  module call (``flax.linen.intercept_methods``, which sees the same tensors as
  ``capture_intermediates=True``), every value passed to ``Module.sow`` and every float leaf of
  an ``aux`` pytree returned next to the loss. The in-situ "(input degree; output degree)" of a
  block is the fitted degree of its actual inputs and output in the target group.

Breaks. A block *breaks* homogeneity when its in-situ inputs are homogeneous but its output is
not (the block itself is responsible: its output depends only on its inputs and parameters). The
**first break** is the earliest block to finish (children finish before their parents) that
breaks, or whose in-situ "(in; out)" contradicts a user expectation (``expect``). Independently of
upstream breaks the audit also flags, from the local signatures: *mismatch* (homogeneous for some
input degrees, but not for the one it receives, e.g. a bias added to a 2-homogeneous tensor),
*intrinsic* (not homogeneous for any trial input degree although all its sub-blocks are, e.g.
softmax or GeLU in its own body: the explanation names the non-homogeneous primitives found in
its jaxpr) and *PostNorm* (a non-homogeneous block whose output is a norm applied to a residual
sum). A mismatch explanation names the block that produced the offending input (e.g. "its input
comes from encoder/final_ln (x;1) - an affine norm resets the degree to 1"). Degrees are integers
(Table 2's are); a non-integer power is reported not homogeneous.

Evaluation point. The audit measures homogeneity at ``params``; a leaf that is identically zero
(a zero-initialised bias or LayerNorm shift) would hide the break it causes, so by default such
leaves are first replaced by random values (``generic=True``; listed in the report's meta).
The recording pass is traced once under ``jax.jit`` (module objects and nesting are recorded at
trace time, the arrays come back as outputs); ``jit=False`` runs everything eagerly.

Degrees are tested for c in ``scales`` (default 1e-2 .. 1e2, 9 points). The default tolerance
follows the tensor's dtype: 1e-4 (float32), 1e-9 (float64), 5e-2 (16-bit). Normalisation
epsilons are not scale invariant: a LayerNorm with eps comparable to c^(2x) var(h) shows up as
not homogeneous at large trial degrees x (e.g. BERT's eps = 1e-12 with x = 3), which is true.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re
import unittest.mock
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaleinv.diagnostics import group_masks_by_prefix
from scaleinv.homogeneity import DEFAULT_SCALES, HomogeneityResult, estimate_degree, fit_log_log, scale_params
from scaleinv.report import jsonable

__all__ = [
    "Fit", "Signature", "AuditRow", "AuditReport", "degree_from_samples", "default_rtol",
    "block_signature", "audit", "audit_factory", "load_factory", "mask_from_regex", "parse_notation",
    "DEFAULT_INPUT_DEGREES", "NONHOMOGENEOUS_PRIMITIVES",
]

DEFAULT_INPUT_DEGREES = (0, 1, 2, 3)

#: elementwise primitives that are not positively homogeneous of any degree, with a remedy hint
NONHOMOGENEOUS_PRIMITIVES = {
    "exp": "exp (softmax?): use SI attention p_ij = relu(s_ij) / sum_j relu(s_ij)",
    "exp2": "exp2: not homogeneous",
    "expm1": "expm1: not homogeneous",
    "log": "log (softplus / log-softmax?): not homogeneous",
    "log1p": "log1p (softplus?): not homogeneous; use ReLU",
    "logistic": "sigmoid (SiLU / gated unit?): not homogeneous; use ReLU",
    "tanh": "tanh (GeLU approximation?): not homogeneous; use ReLU",
    "erf": "erf (exact GeLU?): not homogeneous; use ReLU",
    "erfc": "erfc: not homogeneous",
    "sin": "sin: not homogeneous",
    "cos": "cos: not homogeneous",
}


# --------------------------------------------------------------------------------------- fits
def default_rtol(dtype) -> float:
    """Relative-residual tolerance for accepting a degree: 1e-4 (f32), 1e-9 (f64), 5e-2 (16 bit)."""
    bits = np.dtype(dtype).itemsize * 8
    return 1e-9 if bits >= 64 else 1e-4 if bits >= 32 else 5e-2


@dataclass
class Fit:
    """Degree of one tensor in one group.

    status: "homogeneous" (degree = rounded slope, residual <= rtol), "not homogeneous",
    "zero" (the tensor is 0 at c = 1: k-homogeneous for every k, degree not identifiable) or
    "nonfinite"; slope: least-squares slope of log||y_c|| vs log c; residual: max_c
    ||y_c - c^K y_1|| / ||c^K y_1|| with K the rounded slope; fit_residual: rms of the log-log fit.
    """

    status: str
    degree: Optional[int]
    slope: float
    residual: float
    fit_residual: float
    rtol: float

    @property
    def homogeneous(self) -> bool:
        return self.status == "homogeneous"

    @property
    def consistent(self) -> bool:
        """homogeneous, or identically zero (which is homogeneous of every degree)."""
        return self.status in ("homogeneous", "zero")

    def label(self) -> str:
        return {"homogeneous": str(self.degree), "zero": "zero", "nonfinite": "nan"}.get(self.status, "✗")

    def as_dict(self):
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_result(cls, r: HomogeneityResult, rtol: float) -> "Fit":
        return cls("homogeneous" if r.homogeneous else "not homogeneous",
                   r.rounded if r.homogeneous else None, r.degree, r.residual, r.fit_residual, rtol)


def degree_from_samples(scales: Sequence[float], y1, ys: Sequence[Any], rtol: float) -> Fit:
    """The fit of :func:`scaleinv.homogeneity.estimate_degree` (:func:`~scaleinv.homogeneity.fit_log_log`) on precomputed samples.

    y1 = f(x), ys[i] = f(c_i x) (arrays or pytrees). Same formulas (slope of log||y_c|| vs
    log c, residual max_c ||y_c - c^K y_1|| / ||c^K y_1||, K = round(slope)); needed because the
    audit evaluates *all* intermediates in one forward pass per c instead of one fn per tensor.
    """
    scales = np.asarray([float(c) for c in scales], np.float64)
    y1 = _flat(y1)
    ys = [_flat(y) for y in ys]
    n1 = float(np.linalg.norm(y1))
    if not np.isfinite(n1) or not all(np.all(np.isfinite(y)) for y in ys):
        return Fit("nonfinite", None, float("nan"), float("inf"), float("inf"), rtol)
    if n1 == 0.0:
        return Fit("zero", None, float("nan"), 0.0, 0.0, rtol)
    k, K, rel, fit_res = fit_log_log(scales, y1, ys)
    ok = rel <= rtol
    return Fit("homogeneous" if ok else "not homogeneous", K if ok else None, k, rel, fit_res, rtol)


def _flat(y) -> np.ndarray:
    leaves = [np.asarray(l, dtype=np.float64).ravel() for l in jax.tree.leaves(y)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


def _is_float(a) -> bool:
    return isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)


def _float_leaves(tree) -> List[Tuple[str, Any]]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_float(leaf):
            out.append((jax.tree_util.keystr(path), leaf))
    return out


# --------------------------------------------------------------------------------- signature
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
                       scales, rtol, jit: bool = True, cache: Optional[dict] = None, cache_key=None):
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
            if key not in cache:
                cache[key] = jax.jit(g)
            g = cache[key]
        else:
            g = jax.jit(g)
    return p, mask, g, len(float_inputs)


_REUSE_LIMIT = 20_000_000   # recorded variable elements up to which the recording pass is reused
_JIT_CACHE: Dict[Any, Any] = {}   # identical block calls (same class, attributes, shapes) compile once


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


# ---------------------------------------------------------------------------------- capturing
@dataclass
class _Call:
    path: Tuple[str, ...]
    method: str
    cls: str
    start: int
    parent: Optional[int]
    end: int = -1
    args: Any = None
    kwargs: Any = None
    out: Any = None
    module: Any = None          # unbound copy
    variables: Any = None
    param_index: Any = None     # variables -> index of the leaf in jax.tree.leaves(params), -1 if none
    identity: bool = False      # returned its (first) input unchanged (e.g. deterministic Dropout)
    postnorm: Optional[str] = None  # class of the norm child whose output is returned (PostNorm)
    producer: Optional[int] = None  # innermost earlier call whose output is this call's first input


class _Recorder:
    """Records every flax module call (inputs, outputs, nesting) and every ``sow``n value."""

    def __init__(self, eager: bool):
        self.eager = eager
        self.calls: List[_Call] = []
        self.sows: List[Tuple[Tuple[str, ...], str, str, Any, int]] = []
        self.stack: List[int] = []
        self.counter = 0

    def interceptor(self, next_fun, args, kwargs, context):
        if context.method_name == "setup":
            return next_fun(*args, **kwargs)
        m = context.module
        call = _Call(tuple(str(s) for s in m.path), context.method_name, type(m).__name__,
                     self.counter, self.stack[-1] if self.stack else None)
        self.counter += 1
        idx = len(self.calls)
        self.calls.append(call)
        self.stack.append(idx)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            self.stack.pop()
        call.end, self.counter = self.counter, self.counter + 1
        call.args, call.kwargs, call.out = args, kwargs, out
        if self.eager:
            call.module, call.variables = m.unbind()
        return out

    def analyse(self, params) -> None:
        """Structural facts that need object identity (valid for tracers too): which params leaf
        each module variable is, identity calls, PostNorm (output = a norm child's output whose
        input is not the call's own input, i.e. a norm applied to a residual sum)."""
        index = {id(l): k for k, l in enumerate(jax.tree.leaves(params))}
        made_by: Dict[int, List[int]] = {}
        for i, c in enumerate(self.calls):
            outs = _float_leaves(c.out)
            if len(outs) == 1:
                made_by.setdefault(id(outs[0][1]), []).append(i)
        for i, c in enumerate(self.calls):
            ins = _float_leaves(c.args)
            if ins:
                cands = [j for j in made_by.get(id(ins[0][1]), []) if self.calls[j].end < c.start]
                c.producer = min(cands, key=lambda j: self.calls[j].end) if cands else None
            c.param_index = jax.tree.map(lambda l: index.get(id(l), -1), c.variables)
            outs, ins = _float_leaves(c.out), _float_leaves(c.args)
            c.identity = (not jax.tree.leaves((c.variables or {}).get("params", {})) and len(outs) == 1
                          and bool(ins) and outs[0][1] is ins[0][1])
            children = [cc for cc in self.calls if cc.parent == i]
            if children:
                last = max(children, key=lambda cc: cc.end)
                louts, lins = _float_leaves(last.out), _float_leaves(last.args)
                if ("Norm" in last.cls and len(outs) == 1 and len(louts) == 1 and outs[0][1] is louts[0][1]
                        and ins and lins and lins[0][1] is not ins[0][1]):
                    c.postnorm = last.cls

    def concretize(self, values) -> None:
        """Replace the recorded (traced) arrays by the concrete ``values`` from :func:`_full_pass`."""
        for c, v in zip(self.calls, values["calls"]):
            c.args, c.kwargs = _rebuild(c.args_kwargs_def, v["io"])
            c.out = _rebuild(c.out_def, v["out"])
            c.variables = v["vars"]
        self.sows = [(p, col, n, _rebuild(d, v), o) for (p, col, n, _, o), d, v in
                     zip(self.sows, self.sow_defs, values["sows"])]

    def run(self, fn, *a):
        orig_sow = nn.Module.sow
        rec = self

        def sow(module, col, name, value, *sa, **sk):
            path = tuple(str(s) for s in module.path) or (type(module).__name__,)
            rec.sows.append((path, col, name, value, rec.counter))
            rec.counter += 1
            return orig_sow(module, col, name, value, *sa, **sk)

        with unittest.mock.patch.object(nn.Module, "sow", sow), nn.intercept_methods(self.interceptor):
            return fn(*a)


def _split_arrays(tree):
    """(definition, array leaves): the definition keeps the non-array leaves for :func:`_rebuild`."""
    leaves, treedef = jax.tree.flatten(tree)
    is_arr = [isinstance(l, (jax.Array, np.ndarray)) for l in leaves]
    static = [None if a else l for l, a in zip(leaves, is_arr)]
    return (treedef, is_arr, static), [l for l, a in zip(leaves, is_arr) if a]


def _rebuild(definition, arrays):
    treedef, is_arr, static = definition
    it = iter(arrays)
    return jax.tree.unflatten(treedef, [next(it) if a else s for a, s in zip(is_arr, static)])


def _full_pass(apply_fn, batch, params, jit: bool):
    """One forward pass recording every module call and sown value, with concrete arrays.

    Under ``jit`` the recording happens at trace time and the arrays come back as outputs (no
    op-by-op eager pass, which compiles every primitive separately)."""
    holder = {}

    def run(p):
        rec = _Recorder(eager=True)
        out = rec.run(apply_fn, p, batch)
        rec.analyse(p)
        payload = {"calls": [], "sows": []}
        for c in rec.calls:
            c.args_kwargs_def, io = _split_arrays((c.args, c.kwargs))
            c.out_def, o = _split_arrays(c.out)
            payload["calls"].append({"io": io, "out": o, "vars": c.variables})
        rec.sow_defs = []
        for srec in rec.sows:
            d, v = _split_arrays(srec[3])
            rec.sow_defs.append(d)
            payload["sows"].append(v)
        holder["out_def"], payload["out"] = _split_arrays(out)
        holder["rec"] = rec
        payload["capture"] = _capture_dict(rec, out)
        return payload

    fn = jax.jit(run) if jit else run
    values = fn(params)
    rec = holder["rec"]
    base = values["capture"]
    rec.concretize(values)
    return rec, _rebuild(holder["out_def"], values["out"]), fn, base


def _split_output(out):
    """apply_fn may return the loss or (loss, aux)."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    return out, None


def _call_names(calls: List[_Call]) -> List[str]:
    names, seen = [], {}
    for c in calls:
        base = "/".join(c.path) if c.path else c.cls
        if c.method != "__call__":
            base += "." + c.method
        k = seen.get(base, 0)
        seen[base] = k + 1
        names.append(base if k == 0 else f"{base}#{k + 1}")
    return names


def _captured(apply_fn, batch, params):
    """One forward pass -> dict of every captured float tensor: {"loss", "aux", "calls", "sows"}."""
    rec = _Recorder(eager=False)
    out = rec.run(apply_fn, params, batch)
    return _capture_dict(rec, out)


def _capture_dict(rec, out):
    loss, aux = _split_output(out)
    return {
        "loss": loss,
        "aux": [l for _, l in _float_leaves(aux)] if aux is not None else [],
        "calls": [{"in": [l for _, l in _float_leaves(c.args)], "out": [l for _, l in _float_leaves(c.out)]}
                  for c in rec.calls],
        "sows": [[l for _, l in _float_leaves(s[3])] for s in rec.sows],
    }


# ---------------------------------------------------------------------------------- the audit
@dataclass
class AuditRow:
    """One audited tensor: the loss, one output leaf of a module call, a sown value or aux leaf.

    degrees: in-situ output degree per group; in_degrees: in-situ degree (target group) of each
    float input of the call; signature: local Table-2 signature (target group); flags: "break",
    "first break", "mismatch", "intrinsic", "postnorm", "expect ok", "expect FAIL"."""

    name: str
    kind: str
    cls: str
    depth: int
    order: int
    end: int
    degrees: Dict[str, Fit]
    in_degrees: List[Fit] = field(default_factory=list)
    signature: Optional[Signature] = None
    flags: List[str] = field(default_factory=list)
    explanation: str = ""
    identity: bool = False
    call: Optional[int] = None

    def in_situ(self, group: str) -> str:
        """"(input degrees; output degree)" in ``group`` ("✗" = not homogeneous)."""
        out = self.degrees[group].label()
        if self.kind != "module":
            return out
        ins = ",".join(f.label() for f in self.in_degrees) if self.in_degrees else "0"
        return f"({ins};{out})"

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "class": self.cls, "depth": self.depth,
                "order": self.order, "degrees": {g: f.as_dict() for g, f in self.degrees.items()},
                "in_degrees": [f.as_dict() for f in self.in_degrees],
                "signature": self.signature.as_dict() if self.signature else None,
                "flags": self.flags, "explanation": self.explanation, "identity": self.identity}


@dataclass
class AuditReport:
    rows: List[AuditRow]
    groups: Dict[str, List[str]]
    target_group: str
    target_degree: Optional[int]
    scales: Tuple[float, ...]
    input_degrees: Tuple[int, ...]
    first_break: Optional[str]
    first_break_explanation: str
    expect: Dict[str, str]
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> AuditRow:
        return next(r for r in self.rows if r.kind == "loss")

    def row(self, name: str) -> AuditRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no audited tensor named {name!r}; names: {[r.name for r in self.rows]}")

    @property
    def breaks(self) -> List[AuditRow]:
        """Rows flagged as breaking homogeneity (first break, mismatch, intrinsic, PostNorm)."""
        keys = ("first break", "mismatch", "intrinsic", "postnorm", "expect FAIL")
        return [r for r in self.rows if any(f in keys for f in r.flags)]

    @property
    def target_met(self) -> Optional[bool]:
        """Loss homogeneous of ``target_degree`` in the target group and every expectation met
        (None when neither a target degree nor expectations were given)."""
        if self.target_degree is None and not self.expect:
            return None
        ok = all("expect FAIL" not in r.flags for r in self.rows)
        if self.target_degree is not None:
            f = self.loss.degrees[self.target_group]
            ok = ok and f.homogeneous and f.degree == self.target_degree
        return ok

    def as_dict(self):
        return jsonable({
            "target_group": self.target_group, "target_degree": self.target_degree,
            "target_met": self.target_met, "first_break": self.first_break,
            "first_break_explanation": self.first_break_explanation, "expect": self.expect,
            "scales": list(self.scales), "input_degrees": list(self.input_degrees),
            "groups": self.groups, "meta": self.meta,
            "breaks": [{"name": r.name, "flags": r.flags, "explanation": r.explanation} for r in self.breaks],
            "rows": [r.as_dict() for r in self.rows]})

    def write_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2))
        return path

    # ---- presentation
    def table_groups(self, groups: Optional[Sequence[str]] = None, max_groups: int = 6) -> List[str]:
        if groups is not None:
            bad = [g for g in groups if g not in self.groups]
            if bad:
                raise ValueError(f"unknown group(s) {bad}; allowed: {list(self.groups)}")
            return list(groups)
        names = [self.target_group] + [g for g in self.groups if g != self.target_group]
        return names[:max_groups]

    def visible_rows(self, max_depth: Optional[int] = None, show_identity: bool = False) -> List[AuditRow]:
        return [r for r in self.rows
                if (show_identity or not r.identity) and (max_depth is None or r.depth <= max_depth
                                                          or r.kind == "loss" or r.flags)]

    def summary_lines(self) -> List[str]:
        tg = self.target_group
        lf = self.loss.degrees[tg]
        lines = [f"loss in group '{tg}': " + (f"{lf.degree}-homogeneous (residual {lf.residual:.1e})"
                                               if lf.homogeneous else
                                               f"not homogeneous (residual {lf.residual:.2g}, slope {lf.slope:.3g})")]
        if self.target_degree is not None:
            lines.append(f"target: loss {self.target_degree}-homogeneous in '{tg}' -> "
                         f"{'MET' if self.target_met else 'NOT MET'}")
        if self.first_break:
            lines.append(f"first break: {self.first_break}: {self.first_break_explanation}")
        else:
            lines.append("first break: none (every captured tensor is homogeneous in the target group)")
        seen = set()
        for r in self.breaks:
            key = (re.sub(r"\d+", "N", r.name), r.explanation)
            if r.name == self.first_break or key in seen:
                continue
            seen.add(key)
            lines.append(f"also flagged [{', '.join(f for f in r.flags if f not in ('break', 'expect ok'))}]: "
                         f"{r.name}: {r.explanation}")
        return lines

    def _cells(self, r: AuditRow, groups: Sequence[str]) -> List[str]:
        indent = "  " * max(r.depth - 1, 0) if r.kind == "module" else ""
        sig = r.signature.notation() if r.signature else ""
        flags = ", ".join(f for f in r.flags if f != "break")
        note = (flags + (": " if flags and r.explanation else "") + r.explanation) if (flags or r.explanation) else ""
        return [indent + r.name, r.cls, r.in_situ(self.target_group), sig] + \
               [r.degrees[g].label() for g in groups] + [note]

    def print_table(self, max_depth: Optional[int] = None, groups: Optional[Sequence[str]] = None,
                    show_identity: bool = False, console=None) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        gs = self.table_groups(groups)
        table = Table(title=f"homogeneity audit (target group '{self.target_group}'; "
                            f"c in [{min(self.scales):.0e}, {max(self.scales):.0e}])")
        for col in ["tensor", "class", f"(in;out) in {self.target_group}", "signature"] + \
                [f"deg {g}" for g in gs] + ["flag / explanation"]:
            table.add_column(escape(col), overflow="fold", no_wrap=(col == "tensor"))
        for r in self.visible_rows(max_depth, show_identity):
            cells = [escape(c) for c in self._cells(r, gs)]
            if "first break" in r.flags:
                cells = [f"[bold red]{c}[/]" for c in cells]
            elif any(f in ("mismatch", "intrinsic", "postnorm", "expect FAIL") for f in r.flags):
                cells = [f"[yellow]{c}[/]" for c in cells]
            table.add_row(*cells)
        console = console or Console(width=240)
        console.print(table)
        for line in self.summary_lines():
            console.print(escape(line))

    def to_markdown(self, max_depth: Optional[int] = None, groups: Optional[Sequence[str]] = None,
                    show_identity: bool = False) -> str:
        gs = self.table_groups(groups)
        head = ["tensor", "class", f"(in;out) in {self.target_group}", "signature"] + \
               [f"deg {g}" for g in gs] + ["flag / explanation"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.visible_rows(max_depth, show_identity):
            cells = [c.replace("|", "\\|") for c in self._cells(r, gs)]
            cells[0] = cells[0].replace("  ", "&nbsp;&nbsp;")
            if "first break" in r.flags:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {l}" for l in self.summary_lines()) + "\n"


def mask_from_regex(params, pattern: str):
    """Bool mask selecting the leaves whose path "a/b/c" matches ``pattern`` (re.search)."""
    rx = re.compile(pattern)

    def key_str(k):
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                return str(getattr(k, attr))
        return str(k)

    mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(rx.search("/".join(key_str(k) for k in p))),
                                            params)
    if not any(jax.tree.leaves(mask)):
        raise ValueError(f"group regex {pattern!r} selects no parameter")
    return mask


def _leaf_paths(params, mask) -> List[str]:
    out = []
    for (p, _), m in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(mask)):
        if m:
            out.append(jax.tree_util.keystr(p))
    return out


_NOTATION = re.compile(r"^\(\s*([^;]*);\s*([^)]*)\)$")


def parse_notation(s: str) -> Tuple[Tuple[Optional[int], ...], Optional[int]]:
    """"(2;2)" -> ((2,), 2); "(x;x)" is not accepted (in-situ degrees are numbers)."""
    m = _NOTATION.match(s.strip())
    if not m:
        raise ValueError(f"expected degree notation like '(2;2)' or '(0,1;2)', got {s!r}")

    def num(t):
        t = t.strip()
        if not re.fullmatch(r"-?\d+", t):
            raise ValueError(f"degree {t!r} in {s!r} is not an integer")
        return int(t)

    ins = tuple(num(t) for t in m.group(1).split(",")) if m.group(1).strip() else ()
    return ins, num(m.group(2))


def _explain(call_idx, rows_by_call, calls, sig: Optional[Signature], in_fits, var_info,
             prims: Optional[set]) -> Tuple[str, str]:
    """(kind, one-line explanation) for a block that is not homogeneous where it operates."""
    c = calls[call_idx]
    degs = [f.degree for f in in_fits if f.homogeneous]
    d = degs[0] if degs and len(set(degs)) == 1 and len(degs) == len(in_fits) else None
    if sig is not None and sig.homogeneous_somewhere and d is not None and d not in sig.valid:
        bias, kernel = var_info.get("bias_degree"), var_info.get("kernel_degree")
        if bias is not None and kernel is not None:
            why = (f"adds a bias (degree {bias}) to a degree-{d + kernel} tensor (input degree "
                   f"{d}): a bias may only be added to a tensor of its own degree "
                   f"(Table 2: adding a bias (1;1)); block is {sig.notation()}")
        else:
            why = (f"homogeneous only for input degree(s) {sig.valid} ({sig.notation()}), "
                   f"but its input has degree {d}")
        if c.producer is not None:
            pc = calls[c.producer]
            prow = rows_by_call.get(c.producer, [None])[0]
            psig = prow.signature.notation() if prow is not None and prow.signature else "?"
            why += f"; its input comes from {_call_names(calls)[c.producer]} {psig}"
            if "Norm" in pc.cls and "x;1)" in psig:
                why += (" - an affine norm resets the degree to 1 (Table 2: LayerNorm with affine (x;1)); "
                        "a non-affine norm gives 0")
        return "mismatch", why
    if sig is not None and not sig.homogeneous_somewhere:
        bad = sorted(p for p in (prims or ()) if p in NONHOMOGENEOUS_PRIMITIVES)
        children = [i for i, cc in enumerate(calls) if cc.parent == call_idx]
        child_sigs = [rows_by_call.get(i) for i in children]
        broken_children = [calls[i] for i, rs in zip(children, child_sigs)
                           if rs and any(r.signature is not None and not r.signature.homogeneous_somewhere
                                         for r in rs)]
        post = var_info.get("postnorm")
        if post:
            return "postnorm", (f"PostNorm: output is {post}(h + f(h)); the residual sum mixes the degree of h "
                                f"with that of f(h) and an affine norm resets the degree to 1: use PreNorm "
                                f"h + f(LN(h)) with a non-affine LN")
        if broken_children:
            names = ", ".join("/".join(b.path[-1:]) or b.cls for b in broken_children)
            return "inherited", f"not homogeneous for any input degree because of sub-block(s) {names}"
        if bad:
            return "intrinsic", ("not homogeneous for any input degree " + str(sorted(sig.fits)) + ": contains "
                                 + "; ".join(NONHOMOGENEOUS_PRIMITIVES[p] for p in bad))
        restricted = [(calls[i], rs[0].signature) for i, rs in zip(children, child_sigs)
                      if rs and rs[0].signature is not None and len(rs[0].signature.valid) < len(rs[0].signature.fits)]
        if restricted:
            names = ", ".join(f"{'/'.join(cc.path[-1:]) or cc.cls} {sg.notation()}" for cc, sg in restricted)
            return "inherited", (f"not homogeneous for any input degree: sub-block(s) {names} receive a tensor "
                                 f"of another degree")
        eps = var_info.get("epsilon")
        if eps is not None:
            return "intrinsic", (f"{c.cls} epsilon={eps:g} is not scale invariant: it dominates the variance "
                                 f"at small scales (use a much smaller epsilon)")
        return "intrinsic", ("not homogeneous for any input degree " + str(sorted(sig.fits)) +
                             ": it sums terms of different degrees (a bias or a residual on a tensor of "
                             "another degree?)")
    if d is None and in_fits and not all(f.consistent for f in in_fits):
        return "inherited", "its input is not homogeneous (upstream break)"
    if d is None and len(degs) == len(in_fits) and in_fits:
        return "break", f"its inputs have different degrees {degs}: they are combined non-homogeneously"
    return "break", "not homogeneous at its operating point"


def audit(apply_fn: Callable, params, batch, *, groups: Optional[Mapping[str, Any]] = None,
          depths: Sequence[int] = (1, 2), target_group: str = "all", target_degree: Optional[int] = None,
          expect: Optional[Mapping[str, str]] = None, scales: Sequence[float] = DEFAULT_SCALES,
          input_degrees: Sequence[int] = DEFAULT_INPUT_DEGREES, rtol: Optional[float] = None,
          signatures: bool = True, jit: bool = True, generic: bool = True, seed: int = 0) -> AuditReport:
    """Homogeneity audit of ``apply_fn(params, batch) -> loss`` (or ``(loss, aux)``).

    groups: extra named bool masks over ``params`` (user groups); always present: "all" and
    the prefix groups of :func:`scaleinv.diagnostics.group_masks_by_prefix` for each depth in
    ``depths`` (1: top-level submodules, 2: layers). target_group / target_degree: the group in
    which the loss should be ``target_degree``-homogeneous (e.g. "encoder", 0). expect: {regex
    on tensor names: "(2;2)"} in-situ expectations (e.g. {r"encoder/layer_\\d+": "(2;2)"}).
    See the module docstring for what is measured.

    generic: leaves of ``params`` that are identically zero (zero-initialised biases, LayerNorm
    shifts) are first replaced by random normal values of the parameters' rms (PRNG ``seed``): a
    zero bias hides the non-homogeneity it causes as soon as training moves it, so the audit
    describes the architecture rather than this initialisation. ``generic=False`` audits
    ``params`` exactly. The replaced leaves are listed in ``report.meta["randomized_zero_leaves"]``.
    """
    params, randomized = _generic_point(params, seed) if generic else (params, [])
    scales = tuple(float(c) for c in scales)
    if len(scales) < 2 or any(c <= 0 for c in scales):
        raise ValueError(f"scales must hold at least 2 positive values, got {scales}")
    input_degrees = tuple(int(x) for x in input_degrees)
    if not input_degrees:
        raise ValueError("input_degrees must not be empty")
    if any(int(d) < 1 for d in depths):
        raise ValueError(f"depths must be >= 1, got {tuple(depths)}")
    all_groups: Dict[str, Any] = {"all": jax.tree.map(lambda _: True, params)}
    for d in depths:
        for name, m in group_masks_by_prefix(params, int(d)).items():
            if name not in all_groups and not any(jax.tree.leaves(m) == jax.tree.leaves(o)
                                                  for o in all_groups.values()):
                all_groups[name] = m
    for name, m in (groups or {}).items():
        if name in all_groups:
            raise ValueError(f"group name {name!r} is already taken by a built-in group")
        if jax.tree.structure(m) != jax.tree.structure(params):
            raise ValueError(f"group {name!r}: mask must have the structure of params")
        all_groups[name] = m
    if target_group not in all_groups:
        raise ValueError(f"target_group {target_group!r} is not a group; allowed: {list(all_groups)}")
    expect = dict(expect or {})
    for k, v in expect.items():
        parse_notation(v)
        re.compile(k)

    # one recorded pass: module objects, concrete inputs/outputs, nesting
    rec, out, full_fn, base = _full_pass(apply_fn, batch, params, jit)
    calls = rec.calls
    names = _call_names(calls)

    recorded = sum(int(np.size(l)) for c in calls for l in jax.tree.leaves(c.variables))
    if jit and recorded <= _REUSE_LIMIT:
        # small model: reuse the compiled recording pass (its extra outputs are cheap)
        def capture(p):
            return full_fn(p)["capture"]
    else:
        capture = jax.jit(lambda p: _captured(apply_fn, batch, p)) if jit else (lambda p: _captured(apply_fn, batch, p))
        check = capture(params)
        if len(check["calls"]) != len(calls) or len(check["sows"]) != len(rec.sows):
            raise RuntimeError("apply_fn called a different set of modules on a second call; it must be "
                               "deterministic in which modules it calls")
    samples = {g: [capture(scale_params(params, c, m)) for c in scales] for g, m in all_groups.items()}

    def fit(getter, ref, only=None):
        tol = rtol if rtol is not None else default_rtol(np.asarray(ref).dtype)
        return {g: degree_from_samples(scales, getter(base), [getter(s) for s in samples[g]], tol)
                for g in (only or all_groups)}

    tg = target_group
    tmask_leaves = [bool(m) for m in jax.tree.leaves(all_groups[tg])]

    def in_group(k: int) -> bool:   # k: index of a module variable in jax.tree.leaves(params)
        return tmask_leaves[k] if k >= 0 else tg == "all"

    rows: List[AuditRow] = []
    loss_row = AuditRow("loss", "loss", "loss", 0, 10**9, 10**9, fit(lambda s: s["loss"], base["loss"]))
    rows.append(loss_row)
    rows_by_call: Dict[int, List[AuditRow]] = {}
    call_info: Dict[int, Dict[str, Any]] = {}
    for i, (c, name) in enumerate(zip(calls, names)):
        outs = _float_leaves(c.out)
        in_leaves = _float_leaves(c.args)
        in_fits = []
        for j, (_, leaf) in enumerate(in_leaves):
            in_fits.append(fit(lambda s, i=i, j=j: s["calls"][i]["in"][j], leaf, only=(tg,))[tg])
        identity = c.identity
        info = _var_info(c, in_group)
        call_info[i] = info
        for j, (key, leaf) in enumerate(outs):
            rname = name if len(outs) == 1 else f"{name}{key}"
            row = AuditRow(rname, "module", c.cls, max(len(c.path), 1), c.start, c.end,
                           fit(lambda s, i=i, j=j: s["calls"][i]["out"][j], leaf), in_degrees=in_fits,
                           identity=identity, call=i)
            rows_by_call.setdefault(i, []).append(row)
            rows.append(row)
    for k, (path, col, sname, value, order) in enumerate(rec.sows):
        for j, (key, leaf) in enumerate(_float_leaves(value)):
            rname = "/".join(path) + f"/sow:{col}/{sname}{key if len(_float_leaves(value)) > 1 else ''}"
            rows.append(AuditRow(rname, "sow", "sow", max(len(path), 1) + 1, order, order,
                                 fit(lambda s, k=k, j=j: s["sows"][k][j], leaf)))
    _, aux = _split_output(out)
    for j, (key, leaf) in enumerate(_float_leaves(aux) if aux is not None else []):
        rows.append(AuditRow(f"aux{key}", "aux", "aux", 1, 10**9 - 1, 10**9 - 1,
                             fit(lambda s, j=j: s["aux"][j], leaf)))

    # local signatures (target group)
    jit_cache = _JIT_CACHE
    if len(jit_cache) > 512:
        jit_cache.clear()
    if signatures:
        for i, c in enumerate(calls):
            if c.module is None or all(r.identity for r in rows_by_call.get(i, [])):
                continue
            var_mask = {col: jax.tree.map(lambda k, _col=col: _col == "params" and in_group(k), t)
                        for col, t in c.param_index.items()}
            method = c.method

            fn = _apply_method(c.module, method, c.kwargs)

            no_float_input = not _float_leaves(c.args)
            p, m, g, n = _signature_problem(fn, c.variables, list(c.args), var_mask, input_degrees, scales, rtol,
                                            jit=jit and not no_float_input, cache=jit_cache,
                                            cache_key=_module_key(c))
            for j, row in enumerate(rows_by_call.get(i, [])):
                if no_float_input:
                    # output = B(theta_B; data): scaling the group scales exactly theta_B's group
                    # leaves, so the signature "(0;y)" is the in-situ degree (no extra compile)
                    row.signature = Signature(0, {0: row.degrees[tg]})
                else:
                    row.signature = _fit_signature(p, m, g, n, j, input_degrees, scales, rtol)
            if not rows_by_call.get(i) or rows_by_call[i][0].signature.homogeneous_somewhere:
                continue
            try:
                call_info[i]["prims"] = _primitives(jax.make_jaxpr(g)(p))
            except Exception:  # noqa: BLE001 - explanation only
                call_info[i]["prims"] = set()

    # flags
    for r in rows:
        if r.kind != "module":
            continue
        i = r.call
        inputs_ok = all(f.consistent for f in r.in_degrees)
        out_ok = r.degrees[tg].consistent
        info = call_info[i]
        if inputs_ok and not out_ok:
            kind, why = _explain(i, rows_by_call, calls, r.signature, r.in_degrees, info, info.get("prims"))
            r.flags.append("break")
            if kind in ("mismatch", "intrinsic", "postnorm"):
                r.flags.append(kind)
            r.explanation = why
        elif r.signature is not None and not out_ok:
            kind, why = _explain(i, rows_by_call, calls, r.signature, r.in_degrees, info, info.get("prims"))
            if kind in ("mismatch", "intrinsic", "postnorm"):
                r.flags.append(kind)
                r.explanation = why
        for rx, want in expect.items():
            if re.fullmatch(rx, r.name):
                w_in, w_out = parse_notation(want)
                got_in = tuple(f.degree if f.homogeneous else None for f in r.in_degrees) or (0,)
                got_out = r.degrees[tg].degree if r.degrees[tg].homogeneous else None
                if got_in == w_in and got_out == w_out:
                    r.flags.append("expect ok")
                else:
                    r.flags.append("expect FAIL")
                    if not r.explanation:
                        r.explanation = f"expected {want}, measured {r.in_situ(tg)}"
                    else:
                        r.explanation = f"expected {want}, measured {r.in_situ(tg)}; " + r.explanation

    first = sorted((r for r in rows if r.kind == "module" and ("break" in r.flags or "expect FAIL" in r.flags)),
                   key=lambda r: (r.end, r.order))
    first_name, first_why = None, ""
    if first:
        first[0].flags.insert(0, "first break")
        first_name, first_why = first[0].name, first[0].explanation
    elif not loss_row.degrees[tg].consistent:
        loss_row.flags.append("first break")
        first_name = "loss"
        first_why = ("every captured block is homogeneous but the loss is not: the loss function itself "
                     "(e.g. cross-entropy of logits that are not 0-homogeneous) breaks it")
        loss_row.explanation = first_why
    elif target_degree is not None and loss_row.degrees[tg].degree != target_degree:
        loss_row.flags.append("first break")
        first_name = "loss"
        first_why = f"loss is {loss_row.degrees[tg].degree}-homogeneous, target {target_degree}"
        loss_row.explanation = first_why

    rows[1:] = sorted(rows[1:], key=lambda r: r.order)
    leaves = jax.tree.leaves(params)
    dtype = str(jnp.result_type(*leaves)) if leaves else "none"
    report = AuditReport(rows=rows, groups={g: _leaf_paths(params, m) for g, m in all_groups.items()},
                         target_group=tg, target_degree=target_degree, scales=scales,
                         input_degrees=input_degrees, first_break=first_name,
                         first_break_explanation=first_why, expect=expect,
                         meta={"param_dtype": dtype, "rtol": rtol if rtol is not None else "by dtype",
                               "n_module_calls": len(calls), "n_sows": len(rec.sows),
                               "randomized_zero_leaves": randomized})
    return report


def _generic_point(params, seed: int):
    """Replace identically-zero float leaves by N(0, rms^2) values (rms over the nonzero leaves)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    nz = [np.asarray(l, np.float64).ravel() for _, l in flat if _is_float(l) and np.any(np.asarray(l) != 0)]
    rms = float(np.sqrt(np.mean(np.concatenate(nz) ** 2))) if nz else 1.0
    rng = np.random.default_rng(seed)
    out, names = [], []
    for path, leaf in flat:
        if _is_float(leaf) and leaf.size and not np.any(np.asarray(leaf) != 0):
            leaf = jnp.asarray(rms * rng.standard_normal(leaf.shape), leaf.dtype)
            names.append(jax.tree_util.keystr(path))
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out), names


def _apply_method(module, method, kwargs):
    def fn(v, *args):
        return module.apply(v, *args, method=method, **kwargs)
    return fn


def _var_info(c: _Call, in_group) -> Dict[str, Any]:
    """Facts used by the explanations: bias/kernel degree in the target group, epsilon, PostNorm."""
    info: Dict[str, Any] = {}
    flat = jax.tree_util.tree_flatten_with_path((c.param_index or {}).get("params", {}))[0]
    for path, k in flat:
        last = jax.tree_util.keystr(path[-1:]).strip("[]'\"")
        deg = int(in_group(k))
        if last == "bias":
            info["bias_degree"] = deg
        elif last in ("kernel", "embedding", "weight"):
            info["kernel_degree"] = deg
    if "bias_degree" in info and "kernel_degree" not in info:
        info["kernel_degree"] = 0
    if c.module is not None and "Norm" in c.cls and hasattr(c.module, "epsilon"):
        info["epsilon"] = float(c.module.epsilon)
    if c.postnorm:
        info["postnorm"] = c.postnorm
    return info


def load_factory(spec: str, **kwargs):
    """Import "package.module:factory" (or "path/to/file.py:factory"), call it with ``kwargs``
    and return (apply_fn, params, batch, options) with options {} when the factory returns a
    3-tuple. Options may hold target_group, target_degree, expect, groups (audit kwargs)."""
    if ":" not in spec:
        raise ValueError(f"factory must be 'module:function', got {spec!r}")
    mod_name, fn_name = spec.rsplit(":", 1)
    if mod_name.endswith(".py"):
        s = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
        if s is None:
            raise ValueError(f"cannot import file {mod_name!r}")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(mod_name)
    if not hasattr(mod, fn_name):
        raise ValueError(f"module {mod_name!r} has no attribute {fn_name!r}")
    res = getattr(mod, fn_name)(**kwargs)
    if not isinstance(res, (tuple, list)) or len(res) not in (3, 4):
        raise ValueError(f"factory {spec!r} must return (apply_fn, params, example_batch[, options]), "
                         f"got {type(res).__name__}")
    apply_fn, params, batch = res[:3]
    options = dict(res[3]) if len(res) == 4 else {}
    allowed = {"target_group", "target_degree", "expect", "groups", "depths", "input_degrees", "scales"}
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"factory options {sorted(bad)} not understood; allowed: {sorted(allowed)}")
    return apply_fn, params, batch, options


def audit_factory(spec: str, factory_kwargs: Optional[Mapping[str, Any]] = None, **audit_kwargs) -> AuditReport:
    """:func:`audit` of the model returned by the factory ``spec`` ("package.module:function");
    the factory's options are defaults, ``audit_kwargs`` override them."""
    apply_fn, params, batch, options = load_factory(spec, **dict(factory_kwargs or {}))
    return audit(apply_fn, params, batch, **{**options, **audit_kwargs})


