"""toyproblems: the talk's toy problems and the claims checked on them (``scaleinv verify``).

Modules:
  problems          -- Problem = (loss(x, key), init(scale, key), groups, meta): Ex 1, MF (Ex 2),
                       normalized MF, constant-sigma scale-invariant loss, normalized linear regression
  run               -- THE runner of every toy trajectory: jit + lax.scan loop returning a Trace (options: record,
                       loss_takes_step, active_steps, final_state, oracle_loss); ``sweep`` vmaps it over configurations
  experiments       -- the public experiments layer shared by the claims and the notebooks
  claims            -- one function per claim of the talk (rows C1..C8): experiment + verdict + figure
  claims_rotational -- the claims of Kosson et al. 2024 (rows R1..R5)
  claims_schedules  -- the claims of Defazio 2025, LR schedules vs the equilibrium (rows S1..)
  claims_adamw_noise -- AdamW under pure-noise gradients, exactly (rows N1..)
  plotting          -- figure helpers

Imports the library ``scaleinv`` only (docs/ARCHITECTURE.md). On import it switches JAX's CPU
threefry lowering to the straight-line form (:mod:`scaleinv.threefry`: the same random numbers,
~1.3-2x faster noisy sweeps; off with ``SCALEINV_THREEFRY_UNROLL=0``).
"""
from scaleinv.threefry import unroll_on_cpu as _unroll_on_cpu

_unroll_on_cpu()
