"""Schedule-corrected weight decay (Defazio 2025, "AdamC" / "SGDC") as optax transforms.

With a learning-rate schedule eta_t, coupled weight decay shrinks a weight by eta_t lambda per step
and the steady state of a normalized layer is ||g||/||x|| = sqrt(2 lambda / eta_t) (SGD): the target
rises as eta_t decays, which is the gradient-norm increase at the end of training. The correction
uses lambda_t = lambda eta_t / eta_max, so lambda_t / eta_t is constant and so is the target:

    SGDC:  x <- x - eta_t (g + lambda_t x)
    AdamC: x <- x - eta_t (m_hat / (sqrt(v_hat) + eps) + lambda_t x)

Reference: A. Defazio, *Why Gradients Rapidly Increase Near the End of Training*, 2025
(arXiv 2506.02285). Closed forms: :mod:`scaleinv.theory.defazio2025`. Apply it to the
scale-invariant (normalized) weights only (``mask``); other weights keep ordinary decay.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import optax

Schedule = Callable[[jax.Array], jax.Array]

__all__ = ["corrected_wd_schedule", "sgdc", "adamc"]


def _check(learning_rate, weight_decay, peak_lr):
    if not callable(learning_rate):
        raise TypeError(f"learning_rate must be a schedule (callable), got {learning_rate!r}")
    for name, v in (("weight_decay", weight_decay), ("peak_lr", peak_lr)):
        if v is None or isinstance(v, jax.core.Tracer):
            continue
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v}")


def corrected_wd_schedule(learning_rate: Schedule, weight_decay: float, peak_lr: Optional[float] = None
                          ) -> Schedule:
    """lambda_t = weight_decay * learning_rate(t) / peak_lr (peak_lr defaults to learning_rate(0))."""
    _check(learning_rate, weight_decay, peak_lr)
    peak = learning_rate(0) if peak_lr is None else peak_lr

    def schedule(count):
        return weight_decay * learning_rate(count) / peak

    return schedule


def sgdc(learning_rate: Schedule, weight_decay: float, peak_lr: Optional[float] = None, mask: Any = None
         ) -> optax.GradientTransformation:
    """SGD with the schedule-corrected weight decay: update = -eta_t (g + lambda eta_t/eta_max x)."""
    return optax.chain(optax.add_decayed_weights(corrected_wd_schedule(learning_rate, weight_decay, peak_lr),
                                                 mask=mask),
                       optax.sgd(learning_rate))


def adamc(learning_rate: Schedule, weight_decay: float, peak_lr: Optional[float] = None, b1: float = 0.9,
          b2: float = 0.999, eps: float = 1e-8, mask: Any = None) -> optax.GradientTransformation:
    """AdamW with the schedule-corrected weight decay (AdamC): decay per step lambda eta_t^2 / eta_max."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                       weight_decay=corrected_wd_schedule(learning_rate, weight_decay, peak_lr), mask=mask)
