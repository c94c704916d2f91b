"""Homogeneity audit of a torch ``nn.Module``: the twin of :mod:`scaleinv.audit` (same measurement,
same report; read its module docstring for the definitions).

* **Local signature** of a block (paper Table 2): the block is evaluated with
  ``torch.func.functional_call`` at its parameters of the group S scaled by c and every floating
  input scaled by c^x, for each trial input degree x; the output's degree in c gives "(x;x+1)",
  "(x;1)", "(0;2)", ... (:class:`scaleinv.audit.Signature`).
* **In situ** degrees: the whole model runs with the parameters of each group scaled by c (again
  ``functional_call``; the module's own parameters are never modified) while forward hooks
  (``register_forward_pre_hook`` / ``register_forward_hook``) capture the floating inputs and
  outputs of every submodule call; the loss and every captured tensor get a fitted degree.
* Breaks, first break, mismatch / intrinsic / PostNorm flags and explanations: the JAX audit's
  own code (:func:`scaleinv.audit.flag_breaks`), fits with :func:`scaleinv.audit.degree_from_samples`
  (:func:`scaleinv.homogeneity.fit_log_log`), the result is an :class:`scaleinv.audit.AuditReport`
  (table, markdown, JSON). "Intrinsic" explanations name the non-homogeneous torch functions
  seen in the block's forward (softmax / scaled_dot_product_attention -> exp, gelu -> erf or
  tanh, sigmoid / silu -> logistic, softplus -> log1p), recorded with a ``TorchFunctionMode``.

Parameters are named as in ``model.named_parameters()`` ("bert.encoder.layer.0.attention.self.query.weight"),
tied parameters once (scaling the tied word embeddings also scales a tied decoder, as in the
model). Groups: "all", the dotted-prefix groups of ``depths`` (1: "bert", "cls"; 2:
"bert.encoder", ...), and user groups (dict name -> parameter names / prefix / callable
name -> bool / :func:`group_from_regex`). The model is put in eval mode (dropout off).

``scaleinv audit package.module:factory`` accepts a torch factory returning ``(model, batch)`` or
``(model, batch, options)``: ``batch`` is a dict (``model(**batch)``), a tuple (``model(*batch)``)
or a tensor; the loss is ``options["loss_fn"](output)`` if given, else ``output.loss`` (HF
models called with ``labels``), else the output itself when it is a scalar tensor.

The recording of one forward pass (hooks, tensor identity) is :mod:`scaleinv.torch.capture`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from scaleinv.audit import (DEFAULT_INPUT_DEGREES, AuditReport, AuditRow, Signature, default_rtol,
                            checked_scales_and_degrees, degree_from_samples, flag_breaks, parse_notation)
from scaleinv.homogeneity import DEFAULT_SCALES
from scaleinv.torch.capture import float_tensors, _np, _TCall, _Recorder, _forward, _capture
from scaleinv.torch.homogeneity import GroupSpec, select

__all__ = ["audit", "block_signature", "group_from_regex", "unpack_factory_result", "is_torch_factory_result",
           "TORCH_NONHOMOGENEOUS"]

#: torch functions -> the key of :data:`scaleinv.audit.NONHOMOGENEOUS_PRIMITIVES` explaining them
TORCH_NONHOMOGENEOUS = {
    "softmax": "exp", "_softmax": "exp", "scaled_dot_product_attention": "exp", "exp": "exp", "exp2": "exp2",
    "expm1": "expm1", "elu": "expm1", "log_softmax": "log", "log": "log", "log1p": "log1p", "softplus": "log1p",
    "mish": "log1p", "sigmoid": "logistic", "silu": "logistic", "tanh": "tanh", "erf": "erf", "erfc": "erfc",
    "sin": "sin", "cos": "cos",
}


def group_from_regex(pattern: str) -> Callable[[str], bool]:
    """Group spec selecting the parameters whose dotted name matches ``pattern`` (re.search)."""
    rx = re.compile(pattern)
    return lambda name: bool(rx.search(name))



# ------------------------------------------------------------------------------ signatures
class _Ops(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "gelu":
            self.names.add("tanh" if kwargs.get("approximate", "none") == "tanh" else "erf")
        elif name in TORCH_NONHOMOGENEOUS:
            self.names.add(TORCH_NONHOMOGENEOUS[name])
        return func(*args, **kwargs)


def _local_params(module: torch.nn.Module, params: Mapping[str, torch.Tensor], root_names: Mapping[int, str]):
    """{local name: (tensor from params, root name)} for the module's parameters (tied ones too)."""
    out = {}
    for lname, p in module.named_parameters(remove_duplicate=False):
        root = root_names.get(id(p))
        if root is not None:
            out[lname] = (params[root], root)
    return out


def _signature(module, local: Mapping[str, Tuple[torch.Tensor, str]], in_group: Callable[[str], bool],
               args, kwargs, input_degrees, scales, rtol, output_index: int = 0) -> Signature:
    arg_is_float = [torch.is_tensor(a) and a.is_floating_point() for a in args]
    n_inputs = sum(arg_is_float)
    degrees = [0] if n_inputs == 0 else list(input_degrees)
    fits = {}
    for x in degrees:
        def g(c, _x=x):
            p = {k: (v * c if in_group(root) else v) for k, (v, root) in local.items()}
            a = tuple(t * (c ** _x) if f else t for t, f in zip(args, arg_is_float))
            with torch.no_grad():
                return _np(float_tensors(torch.func.functional_call(module, p, a, dict(kwargs or {})))[output_index])

        y1 = g(1.0)
        tol = rtol if rtol is not None else default_rtol(_dtype_of(local, args))
        with np.errstate(over="ignore", invalid="ignore"):
            fits[x] = degree_from_samples(scales, y1, [g(c) for c in scales], tol)
    return Signature(n_inputs=n_inputs, fits=fits)


def _dtype_of(local, args):
    for t in [v for v, _ in local.values()] + [a for a in args if torch.is_tensor(a)]:
        if t.is_floating_point():
            return np.dtype(str(t.dtype).replace("torch.", ""))
    return np.dtype("float32")


def block_signature(block: torch.nn.Module, *inputs, group: GroupSpec = None, kwargs=None,
                    input_degrees: Sequence[int] = DEFAULT_INPUT_DEGREES, scales: Sequence[float] = DEFAULT_SCALES,
                    rtol: Optional[float] = None, output_index: int = 0) -> Signature:
    """Table-2 signature of a torch block (:func:`scaleinv.audit.block_signature`'s measurement):
    ``block(*inputs, **kwargs)`` with the parameters of ``group`` (default: all of the block's
    parameters) scaled by c and every floating input by c^x. Non-floating inputs (token ids)
    are data: degree 0, never scaled."""
    names = [n for n, _ in block.named_parameters()]
    sel = set(select(names, group)) if names else set()
    local = {n: (p.detach(), n) for n, p in block.named_parameters()}
    scales = tuple(float(c) for c in scales)
    was = block.training
    block.eval()
    try:
        return _signature(block, local, lambda n: n in sel, inputs, kwargs, input_degrees, scales, rtol, output_index)
    finally:
        block.train(was)


# ------------------------------------------------------------------------------ the audit
def _generic_point(params: Dict[str, torch.Tensor], seed: int):
    nz = [v.detach().double().reshape(-1) for v in params.values() if v.is_floating_point() and bool(torch.any(v != 0))]
    rms = float(torch.sqrt(torch.mean(torch.cat(nz) ** 2))) if nz else 1.0
    gen = torch.Generator().manual_seed(seed)
    out, names = {}, []
    for k, v in params.items():
        if v.is_floating_point() and v.numel() and not bool(torch.any(v != 0)):
            v = (rms * torch.randn(v.shape, generator=gen, dtype=torch.float64)).to(v.dtype)
            names.append(k)
        out[k] = v
    return out, names


def _prefix_groups(names: Sequence[str], depth: int) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for n in names:
        out.setdefault(".".join(n.split(".")[:depth]), []).append(n)
    return out


def _var_info(c: _TCall, root_names, in_group) -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    for lname, p in c.module.named_parameters(recurse=False):
        root = root_names.get(id(p))
        deg = int(in_group(root)) if root is not None else 0
        if lname == "bias":
            info["bias_degree"] = deg
        elif lname == "weight" and "Norm" not in c.cls:
            info["kernel_degree"] = deg
    if "bias_degree" in info and "kernel_degree" not in info:
        info["kernel_degree"] = 0
    if "Norm" in c.cls and hasattr(c.module, "eps"):
        info["epsilon"] = float(c.module.eps)
    if c.postnorm:
        info["postnorm"] = c.postnorm
    return info


def audit(model: torch.nn.Module, batch, *, loss_fn: Optional[Callable[[Any], torch.Tensor]] = None,
          groups: Optional[Mapping[str, GroupSpec]] = None, depths: Sequence[int] = (1, 2),
          target_group: str = "all", target_degree: Optional[int] = None, expect: Optional[Mapping[str, str]] = None,
          scales: Sequence[float] = DEFAULT_SCALES, input_degrees: Sequence[int] = DEFAULT_INPUT_DEGREES,
          rtol: Optional[float] = None, signatures: bool = True, generic: bool = True, seed: int = 0) -> AuditReport:
    """Homogeneity audit of ``model`` on ``batch`` (see the module docstring); the arguments mean
    what they mean in :func:`scaleinv.audit.audit` (``expect`` regexes match the dotted module
    names, e.g. ``{r"encoder\\.layer\\.\\d+": "(2;2)"}``)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    scales, input_degrees = checked_scales_and_degrees(scales, input_degrees, depths)
    model.eval()
    named = dict(model.named_parameters())
    root_names = {id(p): n for n, p in named.items()}
    params = {n: p.detach() for n, p in named.items()}
    params, randomized = _generic_point(params, seed) if generic else (params, [])
    names = list(params)
    all_groups: Dict[str, List[str]] = {"all": names}
    for d in depths:
        for gname, members in _prefix_groups(names, int(d)).items():
            if gname not in all_groups and members not in all_groups.values():
                all_groups[gname] = members
    for gname, spec in (groups or {}).items():
        if gname in all_groups:
            raise ValueError(f"group name {gname!r} is already taken by a built-in group")
        all_groups[gname] = select(names, spec)
    if target_group not in all_groups:
        raise ValueError(f"target_group {target_group!r} is not a group; allowed: {list(all_groups)}")
    expect = dict(expect or {})
    for k, v in expect.items():
        parse_notation(v)
        re.compile(k)

    # one recorded pass (concrete tensors, module objects, nesting)
    rec = _Recorder(model)
    with torch.no_grad():
        out, loss = rec.run(lambda: _forward(model, params, batch, loss_fn))
    rec.analyse()
    calls = rec.calls
    base = {"loss": _np(loss), "calls": [{"in": [_np(t) for t in c.ins], "out": [_np(t) for t in c.outs]}
                                         for c in calls]}
    samples = {}
    for gname, members in all_groups.items():
        sel = set(members)
        samples[gname] = [_capture(model, {k: (v * c if k in sel else v) for k, v in params.items()}, batch,
                                   loss_fn, len(calls)) for c in scales]

    def fit(getter, ref, only=None):
        tol = rtol if rtol is not None else default_rtol(np.asarray(ref).dtype if not torch.is_tensor(ref)
                                                          else np.dtype(str(ref.dtype).replace("torch.", "")))
        with np.errstate(over="ignore", invalid="ignore"):   # huge c^k norms: reported, not warned
            return {g: degree_from_samples(scales, getter(base), [getter(s) for s in samples[g]], tol)
                    for g in (only or all_groups)}

    tg = target_group
    tsel = set(all_groups[tg])

    def in_group(root: Optional[str]) -> bool:
        return root in tsel if root is not None else tg == "all"

    rows: List[AuditRow] = [AuditRow("loss", "loss", "loss", 0, 10**9, 10**9, fit(lambda s: s["loss"], loss))]
    call_names = _names(calls)
    rows_by_call: Dict[int, List[AuditRow]] = {}
    call_info: Dict[int, Dict[str, Any]] = {}
    for i, (c, name) in enumerate(zip(calls, call_names)):
        in_fits = [fit(lambda s, i=i, j=j: s["calls"][i]["in"][j], t, only=(tg,))[tg] for j, t in enumerate(c.ins)]
        call_info[i] = _var_info(c, root_names, in_group)
        for j, t in enumerate(c.outs):
            rname = name if len(c.outs) == 1 else f"{name}[{j}]"
            row = AuditRow(rname, "module", c.cls, len(name.split(".")), c.start, c.end,
                           fit(lambda s, i=i, j=j: s["calls"][i]["out"][j], t), in_degrees=in_fits,
                           identity=c.identity, call=i)
            rows_by_call.setdefault(i, []).append(row)
            rows.append(row)

    if signatures:
        for i, c in enumerate(calls):
            if not rows_by_call.get(i) or all(r.identity for r in rows_by_call[i]):
                continue
            if not any(torch.is_tensor(a) and a.is_floating_point() for a in c.args):
                for r in rows_by_call[i]:   # data-only block: the signature "(0;y)" is the in-situ degree
                    r.signature = Signature(0, {0: r.degrees[tg]})
                continue
            local = _local_params(c.module, params, root_names)
            for j, r in enumerate(rows_by_call[i]):
                r.signature = _signature(c.module, local, in_group, c.args, c.kwargs, input_degrees, scales, rtol, j)
            if rows_by_call[i][0].signature.homogeneous_somewhere:
                continue
            ops = _Ops()
            try:
                with torch.no_grad(), ops:
                    torch.func.functional_call(c.module, {k: v for k, (v, _) in local.items()}, tuple(c.args),
                                               dict(c.kwargs or {}))
            except Exception:  # noqa: BLE001 - explanation only
                pass
            call_info[i]["prims"] = ops.names

    first_name, first_why = flag_breaks(rows, rows_by_call, calls, call_info, tg, expect, target_degree)
    rows[1:] = sorted(rows[1:], key=lambda r: r.order)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in params.values()})
    return AuditReport(rows=rows, groups=dict(all_groups), target_group=tg, target_degree=target_degree,
                       scales=scales, input_degrees=input_degrees, first_break=first_name,
                       first_break_explanation=first_why, expect=expect,
                       meta={"framework": "torch", "param_dtype": ",".join(dtypes),
                             "rtol": rtol if rtol is not None else "by dtype", "n_module_calls": len(calls),
                             "n_sows": 0, "randomized_zero_leaves": randomized})


def _names(calls: Sequence[_TCall]) -> List[str]:
    names, seen = [], {}
    for c in calls:
        base = c.path[0]
        k = seen.get(base, 0)
        seen[base] = k + 1
        names.append(base if k == 0 else f"{base}#{k + 1}")
    return names


# ------------------------------------------------------------------------------ factories
def is_torch_factory_result(res) -> bool:
    """True when a factory returned ``(nn.Module, batch[, options])``."""
    return isinstance(res, (tuple, list)) and len(res) in (2, 3) and isinstance(res[0], torch.nn.Module)


def unpack_factory_result(res, spec: str = "factory"):
    """(model, batch, options) from a torch factory's ``(model, batch[, options])``; options may
    hold target_group, target_degree, expect, groups, depths, input_degrees, scales, loss_fn."""
    if not is_torch_factory_result(res):
        raise ValueError(f"{spec} must return (torch.nn.Module, batch[, options]), got {type(res).__name__}")
    options = dict(res[2]) if len(res) == 3 else {}
    allowed = {"target_group", "target_degree", "expect", "groups", "depths", "input_degrees", "scales", "loss_fn"}
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"factory options {sorted(bad)} not understood; allowed: {sorted(allowed)}")
    return res[0], res[1], options
