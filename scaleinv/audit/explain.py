"""One-line explanations of a break (mismatch, intrinsic, PostNorm, inherited)."""
from __future__ import annotations

from typing import Optional, Tuple

from scaleinv.audit.capture import _call_names
from scaleinv.audit.signatures import Signature

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
    "erfc": "erfc (exact GeLU?): not homogeneous; use ReLU",
    "sin": "sin: not homogeneous",
    "cos": "cos: not homogeneous",
}


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

