"""Capturing every flax module call and sown value of one forward pass (``_Recorder``, ``_full_pass``).

Module calls are seen through ``flax.linen.intercept_methods``. ``Module.sow`` has no such hook,
so :func:`_recording_sow` swaps it for a recording wrapper for the duration of one forward pass
(process-wide: do not run two audits concurrently in threads).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import flax.linen as nn
import jax
import numpy as np

from scaleinv.audit.fitting import _float_leaves


@dataclass
class CallRecord:
    """One module call of a recorded forward pass, as the shared explanations read it (flax and
    torch recorders extend it): its path, method and class, its start index, the index of the
    enclosing call, and the index at which it finished."""
    path: Tuple[str, ...]
    method: str
    cls: str
    start: int
    parent: Optional[int]
    end: int = -1


@dataclass
class _Call(CallRecord):
    args: Any = None
    kwargs: Any = None
    out: Any = None
    module: Any = None          # unbound copy
    variables: Any = None
    param_index: Any = None     # variables -> index of the leaf in jax.tree.leaves(params), -1 if none
    identity: bool = False      # returned its (first) input unchanged (e.g. deterministic Dropout)
    postnorm: Optional[str] = None  # class of the norm child whose output is returned (PostNorm)
    producer: Optional[int] = None  # innermost earlier call whose output is this call's first input
    args_kwargs_def: Any = None     # (args, kwargs) tree without its arrays (see _split_arrays)
    out_def: Any = None             # output tree without its arrays


class _Recorder:
    """Records every flax module call (inputs, outputs, nesting) and every ``sow``n value."""

    def __init__(self, eager: bool):
        self.eager = eager
        self.calls: List[_Call] = []
        self.sows: List[Tuple[Tuple[str, ...], str, str, Any, int]] = []
        self.sow_defs: List[Any] = []   # each sown value's tree without its arrays
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

    def record_sow(self, module, col: str, name: str, value) -> None:
        path = tuple(str(s) for s in module.path) or (type(module).__name__,)
        self.sows.append((path, col, name, value, self.counter))
        self.counter += 1

    def run(self, fn, *a):
        with _recording_sow(self.record_sow), nn.intercept_methods(self.interceptor):
            return fn(*a)


@contextlib.contextmanager
def _recording_sow(hook: Callable[..., None]) -> Iterator[None]:
    """Within the block, every ``Module.sow(col, name, value)`` first calls
    ``hook(module, col, name, value)``, then stores the value as usual."""
    orig_sow = nn.Module.sow

    def sow(module, col, name, value, *sa, **sk):
        hook(module, col, name, value)
        return orig_sow(module, col, name, value, *sa, **sk)

    nn.Module.sow = sow  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.sow = orig_sow  # type: ignore[method-assign]


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
    names: List[str] = []
    seen: Dict[str, int] = {}
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

