"""The :func:`audit` driver: groups, one recorded pass, in-situ degrees, signatures, flags, first break."""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from scaleinv.audit.capture import _Call, _captured, _call_names, _full_pass, _split_output
from scaleinv.audit.explain import _explain
from scaleinv.audit.fitting import _float_leaves, _is_float, default_rtol, degree_from_samples
from scaleinv.audit.report import AuditReport, AuditRow
from scaleinv.audit.signatures import (DEFAULT_INPUT_DEGREES, JitCache, Signature, _fit_signature, _module_key,
                                       _primitives, _signature_problem)
from scaleinv.diagnostics import group_masks_by_prefix, path_name
from scaleinv.homogeneity import DEFAULT_SCALES, scale_params

_REUSE_LIMIT = 20_000_000   # recorded variable elements up to which the recording pass is reused
_SHARED_JIT_CACHE = JitCache()   # default for audit(jit_cache=None): shared by successive audits


def mask_from_regex(params, pattern: str):
    """Bool mask selecting the leaves whose path "a/b/c" matches ``pattern`` (re.search)."""
    rx = re.compile(pattern)
    mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(rx.search(path_name(p))), params)
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


def audit(apply_fn: Callable, params, batch, *, groups: Optional[Mapping[str, Any]] = None,
          depths: Sequence[int] = (1, 2), target_group: str = "all", target_degree: Optional[int] = None,
          expect: Optional[Mapping[str, str]] = None, scales: Sequence[float] = DEFAULT_SCALES,
          input_degrees: Sequence[int] = DEFAULT_INPUT_DEGREES, rtol: Optional[float] = None,
          signatures: bool = True, jit: bool = True, generic: bool = True, seed: int = 0,
          jit_cache: Optional[JitCache] = None) -> AuditReport:
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

    jit_cache: where the compiled signature functions are kept (:class:`JitCache`); default: one
    cache shared by successive audits in this process, so repeated blocks compile once.
    """
    params, randomized = _generic_point(params, seed) if generic else (params, [])
    scales_t, degrees_t, all_groups, expect_d = _checked_settings(params, scales, input_degrees, depths, groups,
                                                                  target_group, expect)
    # one recorded pass: module objects, concrete inputs/outputs, nesting
    rec, out, full_fn, base = _full_pass(apply_fn, batch, params, jit)
    capture = _capture_fn(apply_fn, batch, params, jit, rec, full_fn)
    samples = {g: [capture(scale_params(params, c, m)) for c in scales_t] for g, m in all_groups.items()}
    fit = _DegreeFitter(scales_t, base, samples, rtol)
    in_group = _target_membership(all_groups, target_group)

    rows, rows_by_call, call_info = _in_situ_rows(rec, out, fit, target_group, in_group)
    if signatures:
        _add_signatures(rec.calls, rows_by_call, call_info, in_group, target_group, degrees_t, scales_t, rtol,
                        jit, jit_cache if jit_cache is not None else _SHARED_JIT_CACHE)
    first_name, first_why = flag_breaks(rows, rows_by_call, rec.calls, call_info, target_group, expect_d,
                                        target_degree)

    rows[1:] = sorted(rows[1:], key=lambda r: r.order)
    leaves = jax.tree.leaves(params)
    dtype = str(jnp.result_type(*leaves)) if leaves else "none"
    return AuditReport(rows=rows, groups={g: _leaf_paths(params, m) for g, m in all_groups.items()},
                       target_group=target_group, target_degree=target_degree, scales=scales_t,
                       input_degrees=degrees_t, first_break=first_name,
                       first_break_explanation=first_why, expect=expect_d,
                       meta={"param_dtype": dtype, "rtol": rtol if rtol is not None else "by dtype",
                             "n_module_calls": len(rec.calls), "n_sows": len(rec.sows),
                             "randomized_zero_leaves": randomized})


# ---------------------------------------------------------------- the steps of audit()
def checked_scales_and_degrees(scales, input_degrees, depths) -> Tuple[Tuple[float, ...], Tuple[int, ...]]:
    """(scales, input_degrees) as tuples, or ValueError naming the field (shared with
    ``scaleinv.torch.audit``): >= 2 positive scales, >= 1 input degree, depths >= 1."""
    scales = tuple(float(c) for c in scales)
    if len(scales) < 2 or any(c <= 0 for c in scales):
        raise ValueError(f"scales must hold at least 2 positive values, got {scales}")
    input_degrees = tuple(int(x) for x in input_degrees)
    if not input_degrees:
        raise ValueError("input_degrees must not be empty")
    if any(int(d) < 1 for d in depths):
        raise ValueError(f"depths must be >= 1, got {tuple(depths)}")
    return scales, input_degrees


def _checked_settings(params, scales, input_degrees, depths, groups, target_group, expect
                      ) -> Tuple[Tuple[float, ...], Tuple[int, ...], Dict[str, Any], Dict[str, str]]:
    """Validate the settings (ValueError naming the field); returns (scales, input_degrees,
    all groups, expect) in their normalised forms."""
    scales, input_degrees = checked_scales_and_degrees(scales, input_degrees, depths)
    all_groups = _all_groups(params, depths, groups)
    if target_group not in all_groups:
        raise ValueError(f"target_group {target_group!r} is not a group; allowed: {list(all_groups)}")
    expect = dict(expect or {})
    for k, v in expect.items():
        parse_notation(v)
        re.compile(k)
    return scales, input_degrees, all_groups, expect


def _capture_fn(apply_fn, batch, params, jit: bool, rec, full_fn) -> Callable:
    """params -> the captured values of one forward pass (loss, every call's inputs / outputs,
    sows, aux). A small model reuses the compiled recording pass (its extra outputs are cheap);
    a large one compiles a capture-only pass, checked to call the same modules."""
    recorded = sum(int(np.size(leaf)) for c in rec.calls for leaf in jax.tree.leaves(c.variables))
    if jit and recorded <= _REUSE_LIMIT:
        def capture(p):
            return full_fn(p)["capture"]
        return capture
    capture = jax.jit(lambda p: _captured(apply_fn, batch, p)) if jit else (lambda p: _captured(apply_fn, batch, p))
    check = capture(params)
    if len(check["calls"]) != len(rec.calls) or len(check["sows"]) != len(rec.sows):
        raise RuntimeError("apply_fn called a different set of modules on a second call; it must be "
                           "deterministic in which modules it calls")
    return capture


class _DegreeFitter:
    """Degree of one captured quantity in each group, from the samples at the scales c:
    ``fit(getter, ref, only=None) -> {group: Fit}`` (tolerance ``rtol``, or by ``ref``'s dtype)."""

    def __init__(self, scales, base, samples, rtol):
        self.scales, self.base, self.samples, self.rtol = scales, base, samples, rtol

    def __call__(self, getter, ref, only=None):
        tol = self.rtol if self.rtol is not None else default_rtol(np.asarray(ref).dtype)
        return {g: degree_from_samples(self.scales, getter(self.base), [getter(s) for s in self.samples[g]], tol)
                for g in (only or self.samples)}


def _target_membership(all_groups, target_group: str) -> Callable[[int], bool]:
    """k (index of a module variable in jax.tree.leaves(params), -1 if none) -> in the target group."""
    tmask_leaves = [bool(m) for m in jax.tree.leaves(all_groups[target_group])]

    def in_group(k: int) -> bool:
        return tmask_leaves[k] if k >= 0 else target_group == "all"
    return in_group


def _in_situ_rows(rec, out, fit: _DegreeFitter, tg: str, in_group):
    """The loss row, one row per float output of every module call (with its inputs' degrees in
    the target group), per sown value and per aux leaf; returns (rows, rows by call index, the
    explanation facts of each call)."""
    calls = rec.calls
    rows: List[AuditRow] = [AuditRow("loss", "loss", "loss", 0, 10**9, 10**9,
                                     fit(lambda s: s["loss"], fit.base["loss"]))]
    rows_by_call: Dict[int, List[AuditRow]] = {}
    call_info: Dict[int, Dict[str, Any]] = {}
    for i, (c, name) in enumerate(zip(calls, _call_names(calls))):
        outs = _float_leaves(c.out)
        in_fits = [fit(lambda s, i=i, j=j: s["calls"][i]["in"][j], leaf, only=(tg,))[tg]
                   for j, (_, leaf) in enumerate(_float_leaves(c.args))]
        call_info[i] = _var_info(c, in_group)
        for j, (key, leaf) in enumerate(outs):
            rname = name if len(outs) == 1 else f"{name}{key}"
            row = AuditRow(rname, "module", c.cls, max(len(c.path), 1), c.start, c.end,
                           fit(lambda s, i=i, j=j: s["calls"][i]["out"][j], leaf), in_degrees=in_fits,
                           identity=c.identity, call=i)
            rows_by_call.setdefault(i, []).append(row)
            rows.append(row)
    for si, (path, col, sname, value, order) in enumerate(rec.sows):
        for j, (key, leaf) in enumerate(_float_leaves(value)):
            rname = "/".join(path) + f"/sow:{col}/{sname}{key if len(_float_leaves(value)) > 1 else ''}"
            rows.append(AuditRow(rname, "sow", "sow", max(len(path), 1) + 1, order, order,
                                 fit(lambda s, si=si, j=j: s["sows"][si][j], leaf)))
    _, aux = _split_output(out)
    for j, (key, leaf) in enumerate(_float_leaves(aux) if aux is not None else []):
        rows.append(AuditRow(f"aux{key}", "aux", "aux", 1, 10**9 - 1, 10**9 - 1,
                             fit(lambda s, j=j: s["aux"][j], leaf)))
    return rows, rows_by_call, call_info


def _add_signatures(calls, rows_by_call, call_info, in_group, tg: str, input_degrees, scales, rtol, jit: bool,
                    jit_cache: JitCache) -> None:
    """The local Table-2 signature of every non-identity module call in the target group
    (``row.signature``), and for a block homogeneous nowhere the primitives of its jaxpr
    (``call_info[i]["prims"]``, used by the explanations)."""
    for i, c in enumerate(calls):
        if c.module is None or all(r.identity for r in rows_by_call.get(i, [])):
            continue
        var_mask = {col: jax.tree.map(lambda k, _col=col: _col == "params" and in_group(k), t)
                    for col, t in c.param_index.items()}
        fn = _apply_method(c.module, c.method, c.kwargs)
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


def _all_groups(params, depths: Sequence[int], groups: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """"all", the prefix groups for each depth (duplicates of an earlier mask dropped), then the user's."""
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
    return all_groups



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


def flag_breaks(rows: List[AuditRow], rows_by_call: Dict[int, List[AuditRow]], calls: Sequence[Any],
                call_info: Dict[int, Dict[str, Any]], tg: str, expect: Mapping[str, str],
                target_degree: Optional[int]) -> Tuple[Optional[str], str]:
    """Flag the rows (break, mismatch, intrinsic, postnorm, expect ok / FAIL) and mark the first
    break (module docstring); returns (first break name or None, its explanation). Shared by the
    flax audit and :mod:`scaleinv.torch.audit`: ``calls`` are the recorded calls (objects with
    ``path, method, cls, parent, producer``), ``call_info[i]`` the explanation facts of call i
    (bias_degree, kernel_degree, epsilon, postnorm, prims), ``rows[0]`` the loss row."""
    loss_row = next(r for r in rows if r.kind == "loss")
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

    return first_name, first_why
