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

Modules: ``fitting`` (degree fits), ``signatures`` (local Table-2 signature of a block),
``capture`` (recording module calls and sown values), ``report`` (rows, JSON, table, markdown),
``explain`` (why a block breaks), ``driver`` (:func:`audit`), ``factory`` (``module:function`` models),
``examples`` (the Table-2 blocks as flax modules and a toy SIBERT-like stack).
"""
from __future__ import annotations

from scaleinv.audit.driver import audit, checked_scales_and_degrees, flag_breaks, mask_from_regex, parse_notation
from scaleinv.audit.explain import NONHOMOGENEOUS_PRIMITIVES
from scaleinv.audit.factory import audit_factory, call_factory, load_factory
from scaleinv.audit.fitting import Fit, default_rtol, degree_from_samples
from scaleinv.audit.report import AuditReport, AuditRow
from scaleinv.audit.signatures import DEFAULT_INPUT_DEGREES, JitCache, Signature, block_signature

__all__ = [
    "Fit", "Signature", "AuditRow", "AuditReport", "degree_from_samples", "default_rtol",
    "block_signature", "audit", "checked_scales_and_degrees", "flag_breaks", "audit_factory", "call_factory", "load_factory", "mask_from_regex", "parse_notation",
    "DEFAULT_INPUT_DEGREES", "NONHOMOGENEOUS_PRIMITIVES", "JitCache",
]

