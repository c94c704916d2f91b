"""Closed-form predictions, one module per paper; every name is re-exported here
(``from scaleinv import theory; theory.equilibrium_sq_norm(...)``).

Modules:
  li2022     -- Li et al., ICML 2022 (the talk): Ex 1 divergence LR, effective LR, SGD+WD
                equilibrium, relative global clipping, WD <=> exponential LR, time bounds
  kosson2024 -- Kosson et al., ICML 2024: rotational equilibrium angle / norm per optimizer,
                approach time scale and steps
  adamw_noise -- AdamW under pure-noise gradients: exact stationary norm and weight/update cosine,
                the beta2 correction (first order in 1 - beta2)
  wang2025   -- Wang & Aitchison 2024/25: weight decay as an EMA timescale tau = 1/(eta lambda), the
                influence of one gradient on later weights, the optimal timescale in epochs (ridge toy)
  lyu2022    -- Lyu, Li, Arora 2022: edge of stability of GD + WD (effective sharpness, onset time)
  defazio2025 -- Defazio 2025: LR schedules vs the weight-decay equilibrium (quasi-static ratio,
                norm ODE, adiabatic lag), corrected weight decay lambda_t = lambda eta_t/eta_max

Names (docs/CONVENTIONS.md): ``eta`` the learning rate, ``weight_decay`` the weight decay (written
lambda in the formulas of the docstrings), ``C`` only the relative-clipping constant, ``dim`` the
number of elements of a weight (d in the formulas), ``sigma`` the gradient norm on the unit sphere.
"""
from scaleinv.theory.adamw_noise import *  # noqa: F403
from scaleinv.theory.adamw_noise import __all__ as _adamw_noise_all
from scaleinv.theory.defazio2025 import *  # noqa: F403
from scaleinv.theory.defazio2025 import __all__ as _defazio2025_all
from scaleinv.theory.kosson2024 import *  # noqa: F403
from scaleinv.theory.kosson2024 import __all__ as _kosson2024_all
from scaleinv.theory.li2022 import *  # noqa: F403
from scaleinv.theory.lyu2022 import *  # noqa: F403
from scaleinv.theory.lyu2022 import __all__ as _lyu2022_all
from scaleinv.theory.wang2025 import *  # noqa: F403
from scaleinv.theory.wang2025 import __all__ as _wang2025_all
from scaleinv.theory.li2022 import __all__ as _li2022_all

__all__ = list(_li2022_all) + list(_kosson2024_all) + list(_defazio2025_all) + list(_adamw_noise_all) + list(_wang2025_all) + list(_lyu2022_all)
assert len(set(__all__)) == len(__all__), "a name is exported by two theory modules"
