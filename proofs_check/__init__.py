"""proofs_check: sympy derivations of every formula in the talk (docs/PAPER_NOTES.md), with errata.

Each topic module exposes ``derivations() -> list[Derivation]``. A derivation is computed from
the definitions (the update rule, the loss, the homogeneity relation), never by typing the
stated answer in; :func:`proofs_check.derivation.compare` then compares it with the formula as
the talk states it. Disagreements are recorded as errata with the corrected form.

Modules:
  derivation    -- the Derivation record and the stated-vs-derived checker
  symbols       -- shared sympy symbols and sampling ranges
  homogeneity   -- item 1: homogeneity lemma, Euler, norm growth, unbounded smoothness
  ex1           -- item 2: Ex 1 divergence threshold
  factorization -- item 3: Ex 2 and the normalized factorization
  effective_lr  -- item 4: effective LR eta/||x||^2
  exp_lr        -- item 5: WD <=> exponential LR
  equilibrium   -- items 6, 9: SGD+WD norm equilibrium and band
  clipping      -- item 7: relative global clipping
  gdwd          -- item 8: the GD+WD theorem (descent step, T0)
  rotational    -- item 10: rotational-equilibrium angles (Kosson et al. 2024)
  schedules     -- item 11: LR schedules vs the weight-decay equilibrium (Defazio 2025)
  adamw_noise   -- item 12: AdamW under pure-noise gradients, exactly
  report        -- every derivation as report rows; LaTeX / markdown

Imports sympy and ``scaleinv.report`` only (docs/ARCHITECTURE.md).
"""
