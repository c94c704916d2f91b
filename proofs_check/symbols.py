"""Shared sympy symbols and sampling ranges (the ranges encode the assumptions of the numeric
fallback checks: 0 < eta*lambda < 1)."""
import sympy as sp

eta, lam, sigma, u, C = sp.symbols("eta lambda sigma u C", positive=True)
q = sp.Symbol("q", positive=True)                       # q = 1 - eta*lambda in (0, 1)
t = sp.Symbol("t", integer=True, nonnegative=True)
RANGES = {eta: (1e-3, 1.0), lam: (1e-4, 0.9), sigma: (0.1, 10.0), C: (1.0, 4.0), q: (0.1, 0.999), t: (0, 50)}

S_ELR = 'slide "Existing Analysis for SGD on Scale Invariant Loss"'
S_WD = 'slide "Ingredient 2: SGD + WD"'
S_I3 = 'slide "Ingredient 3: Global Relative Clipping"'
S_SGD = 'slide "Convergence Results for SGD +WD"'
S_GD = 'slide "Convergence Results for GD + WD"'
