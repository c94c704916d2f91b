#!/usr/bin/env python
"""Mutation testing for scaleinv: apply plausible one-line bugs, one at a time, and check that
the relevant tests catch each of them (issue 18).

    python tools/mutation.py                  # every mutant, with a baseline run first
    python tools/mutation.py --list           # the mutants and the tests each one runs
    python tools/mutation.py --only clip_threshold_sqrt2,t0_bound_factor2 --skip-baseline
    python tools/mutation.py --json results/mutation.json

How: the repository's files (``git ls-files --cached --others --exclude-standard``) are copied
ONCE to a temporary directory; for each mutant the target file IN THAT COPY is rewritten with the
one-line change (the original text must occur exactly once, else the mutant is "stale" and the
run exits 2), the mutant's tests run there (``python -m pytest -q -x``, PYTHONPATH = the copy),
and the file is restored from memory before the next mutant. The working tree is never written.
A mutant is *killed* when its tests fail (exit code != 0), *survived* otherwise. The baseline
runs every distinct test selection unmutated first: a selection that fails unmutated makes the
score meaningless, and the run stops (exit 3).

Add a mutant whenever a bug is found that the tests missed (and the test that now catches it).
Exit 0 when the score (killed / mutants run) is >= --min-score (default 0.95), else 1.
Out of the default test run (``tools/`` is not a test path); it takes ~10-30 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ test selections
OPTIM = ("tests/core/test_core_optim.py", "tests/core/test_core_optim_edges.py")
THEORY = ("tests/proofs_check/test_theory_vs_derivations.py", "tests/rotational/test_rotational_theory.py")
ROT_THEORY = ("tests/rotational/test_rotational_theory.py",)       # no sympy: much cheaper
HOMOG = ("tests/core/test_core_homogeneity.py",)
DIAG = ("tests/core/test_core_diagnostics.py", "tests/rotational/test_rotational_angular.py")
ROTW = ("tests/rotational/test_rotational_wrapper.py",)
SIBERT = ("tests/sibert/test_sibert_model.py",)
TOYS = ("tests/toys/test_toys_problems.py",)


def verdicts(only: str) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """The verdict test (tests/verdicts) restricted to some claim groups via SCALEINV_VERIFY_ONLY."""
    return ("tests/verdicts/test_verdicts.py", "-k", "verify"), {"SCALEINV_VERIFY_ONLY": only}


@dataclass
class Mutant:
    id: str
    file: str
    old: str
    new: str
    tests: Tuple[str, ...]
    why: str
    env: Dict[str, str] = field(default_factory=dict)


def M(id, file, old, new, tests, why):
    if isinstance(tests, tuple) and len(tests) == 2 and isinstance(tests[1], dict):
        tests, env = tests
    else:
        env = {}
    return Mutant(id, file, old, new, tuple(tests), why, dict(env))


TH = "scaleinv/theory/li2022.py"
TK = "scaleinv/theory/kosson2024.py"
OP = "scaleinv/optim.py"
MUTANTS: List[Mutant] = [
    # ---- theory (closed forms): the examples first
    M("t0_bound_factor2", TH, "return xp.abs(xp.log(x0_sq_norm / eta)) / (2.0 * eta * weight_decay)",
      "return xp.abs(xp.log(x0_sq_norm / eta)) / (eta * weight_decay)", verdicts("C4"),
      "T0 with 1/(eta lambda) instead of 1/(2 eta lambda) (passed every test before issue 18)"),
    M("t1_scale_4x_small", TH, "return (xp.abs(xp.log(eta * weight_decay)) + xp.abs(xp.log(eta / x0_sq_norm))) / (eta * weight_decay)",
      "return (xp.abs(xp.log(eta * weight_decay)) + xp.abs(xp.log(eta / x0_sq_norm))) / (4.0 * eta * weight_decay)", verdicts("C5"),
      "T1 4x too small (only `scaleinv verify --only C5` failed before issue 18)"),
    M("clip_threshold_theory_sqrt2", TH, "return xp.sqrt(2.0 * C * weight_decay / eta) * x_norm",
      "return xp.sqrt(C * weight_decay / eta) * x_norm", OPTIM, "theory.clip_threshold sqrt(2) too small"),
    M("clip_growth_bound", TH, "return (1.0 - eta * weight_decay) ** 2 + 2.0 * C * eta * weight_decay",
      "return (1.0 - eta * weight_decay) ** 2 + 4.0 * C * eta * weight_decay", THEORY, "clip growth bound twice too loose"),
    M("equilibrium_sq_norm_stated", TH, "return xp.sqrt(eta / (weight_decay * (2.0 - eta * weight_decay))) * sigma",
      "return xp.sqrt(2.0 * eta / (weight_decay * (2.0 - eta * weight_decay))) * sigma", THEORY, "the talk's sqrt(2) erratum as theory"),
    M("equilibrium_grad_ratio_sign", TH, "return xp.sqrt(weight_decay * (2.0 - eta * weight_decay) / eta)",
      "return xp.sqrt(weight_decay * (2.0 + eta * weight_decay) / eta)", THEORY, "sign slip in the equilibrium gradient ratio"),
    M("norm_map_eta_power", TH, "return (1.0 - eta * weight_decay) ** 2 * sq_norm + eta**2 * sigma**2 / sq_norm",
      "return (1.0 - eta * weight_decay) ** 2 * sq_norm + eta * sigma**2 / sq_norm", THEORY, "eta instead of eta^2 in the norm map"),
    M("exp_lr_schedule_stated", TH, "return eta * (1.0 - eta * weight_decay) ** (-2.0 * t - 1.0)",
      "return eta * (1.0 - eta * weight_decay) ** (-2.0 * t)", THEORY, "exact exp-LR schedule replaced by the stated one"),
    M("ex1_threshold_factor", TH, "return 2.0 * xp.power(X0, 1.0 / k - 1.0) / xp.abs(dL_dX)",
      "return 2.0 * xp.power(X0, 1.0 / k) / xp.abs(dL_dX)", verdicts("C2"), "Ex 1 threshold exponent 1/k instead of 1/k - 1"),
    M("angle_sgdm_sign", TK, "return xp.sqrt(2.0 * eta * weight_decay / (1.0 + momentum))",
      "return xp.sqrt(2.0 * eta * weight_decay / (1.0 - momentum))", ROT_THEORY, "SGDM equilibrium angle 1-alpha for 1+alpha"),
    M("angle_adamw_beta", TK, "return xp.sqrt(2.0 * eta * weight_decay * (1.0 - beta1) / (1.0 + beta1))",
      "return xp.sqrt(2.0 * eta * weight_decay)", ROT_THEORY, "AdamW angle without the beta1 factor"),
    M("angle_sgdm_in_wrapper", TK, "return xp.sqrt(2.0 * eta * weight_decay / (1.0 + momentum))",
      "return xp.sqrt(2.0 * eta * weight_decay / (1.0 + momentum ** 2))", verdicts("R1,R4"),
      "SGDM angle 2.5% off at alpha = 0.9 (R4 used to compare with the wrapper's own target; with R4 alone at "
      "a 3% tolerance this survived, so R4's all-neuron tolerance is now 2% and R1 (alpha = 0.5: 9.5% off) runs too)"),
    # ---- optimizer
    M("clip_threshold_sqrt2", OP, "scale = jnp.sqrt(2.0 * C * weight_decay / jnp.where(x_pos, eta, 1.0))",
      "scale = jnp.sqrt(C * weight_decay / jnp.where(x_pos, eta, 1.0))", OPTIM,
      "relative clipping threshold sqrt(2) too small"),
    M("clip_threshold_sqrt2_verify", OP, "scale = jnp.sqrt(2.0 * C * weight_decay / jnp.where(x_pos, eta, 1.0))",
      "scale = jnp.sqrt(C * weight_decay / jnp.where(x_pos, eta, 1.0))", verdicts("C8"),
      "the same bug against `scaleinv verify` alone (C8's growth bound was met exactly, so it passed)"),
    M("clip_wrong_step_lr", OP, "eta = _at(learning_rate, state.count)",
      "eta = _at(learning_rate, state.count + 1)", OPTIM,
      "clip threshold reads the next step's LR (passed core, toys, SIBERT, notebook and bench tests)"),
    M("wd_on_masked_leaves", OP, "optax.add_decayed_weights(weight_decay, mask=mask)",
      "optax.add_decayed_weights(weight_decay)", OPTIM, "sgd_wd decays the leaves its mask excludes"),
    M("clip_fires_late", OP, "clipped = finite & (g_norm > threshold)",
      "clipped = finite & (g_norm > 2.0 * threshold)", OPTIM, "clipping fires only at twice the threshold"),
    M("clip_factor_inverted", OP, "factor = jnp.where(clipped, threshold / jnp.where(clipped, g_norm, 1.0), 1.0)",
      "factor = jnp.where(clipped, jnp.where(clipped, g_norm, 1.0) / threshold, 1.0)", OPTIM, "clip factor inverted"),
    M("clip_zero_group_nan", OP, "return _safe_sqrt(sum(jax.tree.leaves(sq), jnp.zeros(())))",
      "return jnp.sqrt(sum(jax.tree.leaves(sq), jnp.zeros(())))", OPTIM,
      "plain sqrt: NaN derivative for an all-zero group"),
    M("clip_nonfinite_passes", OP, "factor = jnp.where(finite, factor, jnp.nan)",
      "factor = factor", OPTIM, "inf / NaN gradients silently zeroed or passed through"),
    M("mask_ignored_in_norm", OP, "tree, mask)\n    return _safe_sqrt", "tree, jax.tree.map(lambda _: True, mask))\n    return _safe_sqrt",
      OPTIM, "the clip norm ignores the group mask"),
    M("sgd_wd_sign", OP, "optax.scale_by_learning_rate(learning_rate),",
      "optax.scale_by_learning_rate(learning_rate, flip_sign=False),", OPTIM, "SGD ascends"),
    M("exp_lr_offset", OP, "offset = 0.0 if as_stated else 1.0", "offset = 0.0", OPTIM,
      "exponential_lr always the stated schedule"),
    # ---- core (homogeneity, diagnostics, rotational wrapper)
    M("homogeneous_always", "scaleinv/homogeneity.py", "homogeneous=bool(rel <= rtol), scales=tuple(scales))",
      "homogeneous=True, scales=tuple(scales))", HOMOG, "every function reported homogeneous"),
    M("angular_update_half", "scaleinv/diagnostics.py", "return 2.0 * jnp.arctan2(tree_norm(diff), tree_norm(summ))",
      "return jnp.arctan2(tree_norm(diff), tree_norm(summ))", DIAG, "angle off by a factor 2"),
    M("rotational_target_lr", "scaleinv/rotational.py",
      "return rotational(inner, lambda c: theory.equilibrium_angle_sgdm(lr(c), weight_decay, momentum),",
      "return rotational(inner, lambda c: theory.equilibrium_angle_sgdm(lr(c + 1), weight_decay, momentum),",
      ROTW, "rotational wrapper target reads the next step's LR"),
    # ---- models
    M("si_attention_softmax", "sibert/model.py", "a = jax.nn.relu(scores)", "a = jnp.exp(scores)", SIBERT,
      "SI attention made softmax-like (not scale invariant)"),
    M("si_attention_denominator", "sibert/model.py",
      "return a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), eps)",
      "return a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True) + 1.0, eps)", SIBERT,
      "SI attention denominator shifted (breaks 0-homogeneity)"),
    # ---- issue 27: options and constants that were accepted but not tested (each test kills its mutant)
    M("adamc_mask_ignored", "scaleinv/corrected_wd.py",
      "weight_decay=corrected_wd_schedule(learning_rate, weight_decay, peak_lr), mask=mask)",
      "weight_decay=corrected_wd_schedule(learning_rate, weight_decay, peak_lr))",
      ("tests/core/test_core_options_honoured.py",), "AdamC decays the leaves its mask excludes"),
    M("sgdc_mask_ignored", "scaleinv/corrected_wd.py", "                                                 mask=mask),",
      "                                                 mask=None),",
      ("tests/core/test_core_options_honoured.py",), "SGDC decays the leaves its mask excludes"),
    M("audit_f32_rtol_10x", "scaleinv/audit/fitting.py", "return 1e-9 if bits >= 64 else 1e-4 if bits >= 32 else 5e-2",
      "return 1e-9 if bits >= 64 else 1e-3 if bits >= 32 else 5e-2", ("tests/audit/test_audit_default_rtol.py",),
      "the audit's float32 tolerance 10x looser"),
    M("proofs_rtol_loose", "proofs_check/derivation.py", "            rtol: float = 1e-10, seed: int = 0)",
      "            rtol: float = 1e-3, seed: int = 0)", ("tests/proofs_check/test_proofs_checker.py",),
      "the proofs checker accepts a 1e-4 non-constant discrepancy"),
    M("torch_clip_norm_grads_only", "scaleinv/torch/optim.py",
      "x_norm = float(torch.sqrt(sum(torch.sum(torch.square(p.double())) for p in params)))",
      "x_norm = float(torch.sqrt(sum(torch.sum(torch.square(p.double())) for p in params if p.grad is not None)))",
      ("tests/torch/test_torch_clip_missing_grad.py",), "torch clip: ||x_S|| over the parameters with a gradient only"),
    M("lion_keff_linear_weight", TK, "return 1.0 + 2.0 * float(np.sum(a**k * (2.0 / np.pi) * np.arcsin(rho)))",
      "return 1.0 + 2.0 * float(np.sum(a**k * (2.0 / np.pi) * rho))", ("tests/rotational/test_lion_constant_pinned.py",),
      "Lion K_eff with the linearised lag correlations (the angle moves ~2 %)"),
    M("lion_keff_no_alpha_weight", TK, "return 1.0 + 2.0 * float(np.sum(a**k * (2.0 / np.pi) * np.arcsin(rho)))",
      "return 1.0 + 2.0 * float(np.sum((2.0 / np.pi) * np.arcsin(rho)))", ("tests/rotational/test_lion_weighted_norm.py",),
      "Lion K_eff without the (1 - eta lambda)^k weighting (R2.4 4.5 % off at eta lambda = 1e-3; issue 27)"),
    M("adamw_source_no_beta2", "scaleinv/theory/defazio2025.py",
      "f = f * adamw_noise_beta2_factor(el, 1.0, b1, beta2)", "f = f",
      ("tests/newer_theory/test_adamw_corrected_pinned.py",),
      "corrected AdamW stationary norm without N3's beta2 factor (S1/S3 targets 1 % off; issue 27)"),
    M("adamw_source_momentum_sign", "scaleinv/theory/defazio2025.py",
      "f = (1.0 - b1) * (1.0 + a * b1) / ((1.0 + b1) * (1.0 - a * b1))",
      "f = (1.0 - b1) * (1.0 - a * b1) / ((1.0 + b1) * (1.0 + a * b1))",
      ("tests/newer_theory/test_adamw_corrected_pinned.py",),
      "momentum factor of the corrected AdamW norm inverted (issue 27)"),
    M("sgd_approach_ode_rate", TK, "(4.0 * float(eta) * float(weight_decay))",
      "(2.0 * float(eta) * float(weight_decay))", ("tests/rotational/test_approach_steps_ode.py",),
      "R3.1's ODE approach time with the rate of ||x||^2 instead of ||x||^4 (2x off; issue 27)"),
    M("m2_tolerance_loose", "toyproblems/claims_timescale.py",
      'M2_BUDGETS = {"sgd": (0.0065, 0.0050, 0.03), "adamw": (0.0033, 0.0025, 0.015)}',
      'M2_BUDGETS = {"sgd": (0.0065, 0.0050, 0.05), "adamw": (0.0033, 0.0025, 0.015)}',
      ("tests/verdicts/test_verdicts_seeds.py", "-k", "seed0"), "a tolerance above 3x its budget"),
    M("claim_id_from_position", "scaleinv/cli/verify.py", "        cid = getattr(c, \"claim_id\", None)\n",
      "        cid = getattr(c, \"claim_id\", None) and f\"{c.claim_id[0]}{sum(d.claim_id[0] == c.claim_id[0] "
      "for d in claims[:claims.index(c) + 1])}\"\n",
      ("tests/toys/test_claim_ids.py",), "ids derived from list positions again (per group letter)"),
]


def _copy_repo(dst: Path) -> None:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _run_tests(root: Path, tests, env_extra, timeout) -> Tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(root), **env_extra}
    env.pop("PYTEST_ADDOPTS", None)
    t = time.time()
    try:
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                           cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        rc, tail = p.returncode, (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        rc, tail = 124, ["timeout"]
    return rc, time.time() - t, tail[0][:160]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated mutant ids")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated selections first")
    ap.add_argument("--json", default=None, help="write the results to this path")
    ap.add_argument("--min-score", type=float, default=0.95)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per test run")
    args = ap.parse_args(argv)
    # SIGTERM -> SystemExit, so that the temporary copy is removed when the run is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mutants = MUTANTS
    if args.only:
        ids = [i.strip() for i in args.only.split(",") if i.strip()]
        unknown = sorted(set(ids) - {m.id for m in MUTANTS})
        if unknown:
            print(f"mutation: error: --only: unknown mutant(s) {unknown}; allowed: {', '.join(m.id for m in MUTANTS)}",
                  file=sys.stderr)
            return 2
        mutants = [m for m in MUTANTS if m.id in ids]
    if args.list:
        for m in mutants:
            env = " ".join(f"{k}={v}" for k, v in m.env.items())
            print(f"{m.id:32s} {m.file:28s} {env} pytest {' '.join(m.tests)}\n    {m.why}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="scaleinv-mutation-") as tmp:
        root = Path(tmp)
        _copy_repo(root)
        stale = [m.id for m in mutants if (root / m.file).read_text().count(m.old) != 1]
        if stale:
            print(f"mutation: error: stale mutants (original text not found exactly once): {stale}", file=sys.stderr)
            return 2
        if not args.skip_baseline:
            for sel in sorted({(m.tests, tuple(sorted(m.env.items()))) for m in mutants}):
                rc, dt, tail = _run_tests(root, sel[0], dict(sel[1]), args.timeout)
                print(f"baseline {' '.join(sel[0])} {dict(sel[1]) or ''}: rc={rc} ({dt:.0f} s) {tail}", flush=True)
                if rc != 0:
                    print("mutation: error: a test selection fails without any mutation; fix it first", file=sys.stderr)
                    return 3
        for m in mutants:
            path = root / m.file
            pristine = path.read_text()
            try:
                path.write_text(pristine.replace(m.old, m.new))
                rc, dt, tail = _run_tests(root, m.tests, m.env, args.timeout)
            finally:
                path.write_text(pristine)
            status = "killed" if rc != 0 else "SURVIVED"
            results.append({**asdict(m), "status": status, "rc": rc, "seconds": round(dt, 1), "tail": tail})
            print(f"{status:8s} {m.id:32s} ({dt:5.0f} s) {tail}", flush=True)
    killed = sum(r["status"] == "killed" for r in results)
    score = killed / len(results) if results else 0.0
    print(f"\nmutation score: {killed}/{len(results)} = {score:.1%} (target >= {args.min_score:.0%})")
    for r in results:
        if r["status"] != "killed":
            print(f"  survived: {r['id']}: {r['why']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"score": score, "killed": killed, "total": len(results),
                                               "mutants": results}, indent=2))
    return 0 if score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
