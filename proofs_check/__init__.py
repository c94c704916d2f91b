"""proofs_check: sympy derivations of every formula in the talk (seeds/001), with errata.

Each topic module exposes ``derivations() -> list[Derivation]``. A derivation is computed from
the definitions (the update rule, the loss, the homogeneity relation), never by typing the
stated answer in; :func:`proofs_check.derivation.compare` then compares it with the formula as
the talk states it. Disagreements are recorded as errata with the corrected form.
"""
