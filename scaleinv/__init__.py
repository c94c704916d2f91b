"""scaleinv: verify the theory of scale-invariant training (Li et al., ICML 2022).

Core modules, usable on any JAX loss:
  homogeneity  -- estimate the degree k of f(c x) = c^k f(x); Euler's identity
  optim        -- optax transforms: sgd_wd, relative_global_clip, exponential_lr
  theory       -- closed-form predictions of the talk/paper
  diagnostics  -- per-step norms, effective LR, angular update, clip fired
  report       -- the report row (claim, predicted, measured, tolerance, status)
"""
__version__ = "0.1.0"
