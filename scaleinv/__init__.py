"""scaleinv: verify the theory of scale-invariant training (Li et al., ICML 2022) on any JAX loss.

The library (imports no wing: toyproblems, proofs_check, sibert, benchmarks; docs/ARCHITECTURE.md):
  homogeneity  -- estimate the degree k of f(c x) = c^k f(x); Euler's identity; scale_params
  optim        -- optax transforms: sgd_wd, relative_global_clip, sgd_wd_rgc, exponential_lr
  corrected_wd -- schedule-corrected weight decay (Defazio 2025) as optax transforms
  theory       -- closed-form predictions, one module per paper (li2022, kosson2024, defazio2025, adamw_noise)
  diagnostics  -- per-step norms, effective LR, angular update, clip fired; prefix groups
  angular      -- angular update / norm per group, per layer, per neuron
  rotational   -- the rotational (REQ) wrapper as an optax transform
  registry     -- the optimizer registry: name -> factory, hyper-parameters, predicted equilibrium
  report       -- the report row (claim, predicted, measured, tolerance, status)
  testing      -- hypothesis strategies and assertions for homogeneity tests
  usage        -- one-line errors for bad command-line input (exit 2, nothing written)
  progress     -- progress bars / log lines for long commands
  compile_cache -- JAX's persistent compilation cache for the commands and the tests
  threefry     -- JAX's straight-line threefry lowering on the CPU (same random bits, faster)
  audit        -- homogeneity audit of flax models (subpackage)
  torch        -- optional PyTorch bridge (needs the torch extra)
  cli          -- the ``scaleinv`` console script: the only code that names the wings
  version      -- the package version, single-sourced from pyproject.toml (``scaleinv --version``)
"""
from scaleinv.version import version as _version

__version__ = _version()
