"""The optimizer registry: one name -> (optax factory, hyper-parameters, theory's prediction).

Every part of the project that picks an optimizer by name (the SIBERT trainer and its config,
the toy explorer, the rotational toy claims, the torch twins' names) reads this table, so a new
optimizer is one :func:`register` call plus its test::

    from scaleinv import registry
    tx = registry.make("sgd-wd-rgc", learning_rate=0.1, weight_decay=3e-2, C=2.0)
    registry.predict("sgd-wd-rgc", eta=0.1, weight_decay=3e-2, sigma=1.0)
    # {'angle': 0.0775 (= sqrt(2 eta lambda)), 'sq_norm': ||x*||^2 of the constant-sigma toy}

An entry's ``make(learning_rate, weight_decay, **hp)`` builds the transform (``learning_rate`` a
float or an optax schedule); ``defaults`` names every hyper-parameter it accepts (anything else is
refused); ``angle(eta, weight_decay, **hp)`` and ``sq_norm(eta, weight_decay, sigma=, dim=, **hp)``
are the equilibrium predictions of :mod:`scaleinv.theory` (Kosson et al. 2024; Li et al. 2022),
``None`` where the theory has none (plain SGD has no equilibrium); an angle that depends on the
gradient (Adam + L2) names ``angle_reads = ("sigma", "dim")`` and is called with them; ``t_eq_slope(eta, weight_decay,
**hp)`` is the predicted growth of the time to equilibrium with the log of the init scale,
d t_eq / d ln||x(0)||^2, for inits far above the equilibrium norm (Li et al. 2022's T0 slope
1/(2 eta lambda), ``theory.t0_slope``; ``None`` where the norm does not decay geometrically). Where the
project derives a corrected form, the entry uses it (SGD + WD: the exact constant-sigma fixed point;
AdamW / AdamC: the stationary norm with the finite eta lambda, momentum and beta2 corrections; Lion:
the arcsine law with the alpha^k lag weighting), so that every claim reading the registry
checks the best prediction the project has. ``schedule`` says which LR
schedule family a trainer pairs it with ("sgd": piecewise constant, no warmup; "adam": warmup
+ linear decay).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import optax

from scaleinv import theory
from scaleinv.theory import defazio2025 as TS
from scaleinv.corrected_wd import adamc, sgdc
from scaleinv.optim import sgd_wd, sgd_wd_rgc
from scaleinv.radial import brake_t_eq_slope, hyperball, hyperball_angle, radial_brake
from scaleinv.rotational import rotational_adamw, rotational_lion, rotational_sgdm

__all__ = ["OptimizerEntry", "register", "get", "names", "make", "make_from", "predict", "predict_t_eq_slope", "REGISTRY"]

Factory = Callable[..., optax.GradientTransformation]
Prediction = Optional[Callable[..., Any]]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One registered optimizer (see the module docstring)."""

    name: str
    make: Factory
    defaults: Mapping[str, Any]
    summary: str
    schedule: str = "sgd"                  # "sgd" | "adam": the LR schedule family a trainer uses
    weight_decay: str = "required"         # "required" (> 0) | "none" (must be 0) | "optional"
    angle: Prediction = None               # (eta, weight_decay, **hp) -> rad / step
    sq_norm: Prediction = None             # (eta, weight_decay, sigma=, dim=, **hp) -> ||x*||^2
    prediction_hp: Tuple[str, ...] = ()    # hyper-parameters the predictions read
    t_eq_slope: Prediction = None          # (eta, weight_decay, **hp) -> d t_eq / d ln||x0||^2 (far above equilibrium)
    angle_reads: Tuple[str, ...] = ()      # ("sigma", "dim"): a gradient-dependent angle


REGISTRY: Dict[str, OptimizerEntry] = {}


def register(entry: OptimizerEntry, replace: bool = False) -> OptimizerEntry:
    """Add ``entry`` (a name already taken is refused unless ``replace``)."""
    if entry.name in REGISTRY and not replace:
        raise ValueError(f"optimizer {entry.name!r} is already registered")
    if entry.schedule not in ("sgd", "adam"):
        raise ValueError(f"schedule must be 'sgd' or 'adam', got {entry.schedule!r}")
    if entry.weight_decay not in ("required", "none", "optional"):
        raise ValueError(f"weight_decay must be 'required', 'none' or 'optional', got {entry.weight_decay!r}")
    REGISTRY[entry.name] = entry
    return entry


def names() -> Tuple[str, ...]:
    """Registered names, in registration order."""
    return tuple(REGISTRY)


def get(name: str) -> OptimizerEntry:
    if name not in REGISTRY:
        raise ValueError(f"optimizer: unknown value {name!r}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _check_wd(e: OptimizerEntry, weight_decay):
    if isinstance(weight_decay, (int, float)):
        if e.weight_decay == "none" and weight_decay != 0:
            raise ValueError(f"weight_decay: {e.name!r} has no weight decay; allowed: 0, got {weight_decay!r}")
        if e.weight_decay == "required" and not weight_decay > 0:
            raise ValueError(f"weight_decay: must be > 0 for {e.name!r}, got {weight_decay!r}")


def make(name: str, learning_rate, weight_decay=0.0, **hp) -> optax.GradientTransformation:
    """The transform of ``name``; ``hp`` overrides the entry's defaults (unknown names refused)."""
    e = get(name)
    unknown = sorted(set(hp) - set(e.defaults))
    if unknown:
        raise TypeError(f"{name}: unknown hyper-parameter(s) {unknown}; allowed: {sorted(e.defaults)}")
    _check_wd(e, weight_decay)
    return e.make(learning_rate, weight_decay, **{**e.defaults, **hp})


def make_from(name: str, learning_rate, weight_decay, available: Mapping[str, Any]) -> optax.GradientTransformation:
    """:func:`make` with the hyper-parameters of ``available`` that ``name`` accepts (a caller
    that holds a config with every optimizer's fields, such as a trainer, passes all of them)."""
    e = get(name)
    return make(name, learning_rate, weight_decay, **{k: v for k, v in available.items() if k in e.defaults})


def predict(name: str, eta, weight_decay, sigma=1.0, dim=None, **hp) -> Dict[str, Any]:
    """{"angle", "sq_norm"}: the equilibrium angle per step and squared norm theory predicts
    (``None`` where there is no prediction, e.g. plain SGD, or ``sq_norm`` of an entry whose norm
    needs ``dim`` when none is given; likewise an ``angle`` that reads ``dim``). ``hp`` defaults
    to the entry's defaults."""
    e = get(name)
    h = {k: hp.get(k, e.defaults.get(k)) for k in e.prediction_hp}
    extra = {k: {"sigma": sigma, "dim": dim}[k] for k in e.angle_reads}
    angle = None
    if e.angle is not None and all(v is not None for v in extra.values()):
        angle = e.angle(eta, weight_decay, **extra, **h)
    sq = e.sq_norm(eta, weight_decay, sigma=sigma, dim=dim, **h) if e.sq_norm is not None else None
    return {"angle": angle, "sq_norm": sq}


def predict_t_eq_slope(name: str, eta, weight_decay, **hp) -> Optional[float]:
    """The entry's predicted d t_eq / d ln||x(0)||^2 for inits far above the equilibrium norm
    (``None`` where it has none). ``hp`` defaults to the entry's defaults."""
    e = get(name)
    if e.t_eq_slope is None:
        return None
    h = {k: hp.get(k, e.defaults.get(k)) for k in e.prediction_hp}
    return float(e.t_eq_slope(eta, weight_decay, **h))


# ------------------------------------------------------------------- the registered optimizers
T = theory
_sgd_sq = lambda eta, wd, sigma, dim, **_: T.equilibrium_sq_norm(eta, wd, sigma)   # noqa: E731  exact fixed point
def _adamw_sq(eta, wd, sigma, dim, b1, b2):
    """AdamW's stationary ||x||^2 on the constant-sigma toy, corrected for finite eta lambda, momentum and
    finite beta2 (N1 / N3: theory.steady_sq_norm_adamw_corrected; eta d / (2 lambda) to leading order,
    theory.equilibrium_norm_adamw)."""
    return None if dim is None else TS.steady_sq_norm_adamw_corrected(eta, wd, dim, b1, b2)
_sgd_angle = lambda eta, wd: T.equilibrium_angle_sgd(eta, wd)                  # noqa: E731
# far above equilibrium the gradient step (norm eta sigma/||x||, or eta sqrt(d) for Adam / Lion) is
# negligible against ||x||, so ||x||^2 shrinks by (1 - eta lambda)^2 per step, coupled or decoupled
# weight decay alike: t_eq grows by 1/(2 eta lambda) per unit of ln||x0||^2 (theory.t0_slope)
_t0_slope = lambda eta, wd, **_: T.t0_slope(eta, wd)                              # noqa: E731


def _sgdm_t_eq_slope(eta, wd, momentum):
    """SGDM with L2 through the momentum, far above equilibrium (gradient negligible):
    m_t = alpha m_{t-1} + lambda x_t, x_{t+1} = x_t - eta m_t. A geometric solution x_t ~ r^t needs
    r^2 - (1 + alpha - eta lambda) r + alpha = 0; the slower (dominant) root r sets
    ||x_t||^2 ~ r^(2t), so d t_eq / d ln||x0||^2 = 1 / (-2 ln r) (-> (1 - alpha)/(2 eta lambda) when
    eta lambda << (1 - alpha)^2). Complex roots (eta lambda > (1 - sqrt(alpha))^2): |r|^2 = alpha, the slope
    is 1 / (-ln alpha) (damped oscillation)."""
    import math

    b = 1.0 + momentum - eta * wd
    disc = b * b - 4.0 * momentum
    if disc < 0:
        return 1.0 / (-math.log(momentum))
    r = (b + math.sqrt(disc)) / 2.0
    return 1.0 / (-2.0 * math.log(r))


def _all(_):
    return True


register(OptimizerEntry(
    "sgd", lambda lr, wd, mask: sgd_wd(lr, 0.0, mask=mask), {"mask": None},
    "plain SGD, no momentum, no weight decay (no equilibrium: the norm of a scale-invariant "
    "weight only grows)", weight_decay="none"))
register(OptimizerEntry(
    "sgd-wd", lambda lr, wd, mask: sgd_wd(lr, wd, mask=mask), {"mask": None},
    "SGD + coupled weight decay, x <- (1 - eta lambda) x - eta g (Li et al. 2022)",
    angle=_sgd_angle, sq_norm=_sgd_sq, t_eq_slope=_t0_slope))
register(OptimizerEntry(
    "sgd-wd-rgc", lambda lr, wd, C, mask: sgd_wd_rgc(lr, wd, C=C, mask=mask), {"C": 2.0, "mask": None},
    "SGD + WD + relative global clipping, ||g|| <= sqrt(2 C lambda / eta) ||x|| (Li et al. 2022)",
    angle=_sgd_angle, sq_norm=_sgd_sq, t_eq_slope=_t0_slope))
register(OptimizerEntry(
    "sgdm", lambda lr, wd, momentum, mask: optax.chain(optax.add_decayed_weights(wd, mask=mask),
                                                       optax.sgd(lr, momentum=momentum)),
    {"momentum": 0.9, "mask": None}, "SGD with momentum, L2 weight decay through the momentum",
    angle=lambda eta, wd, momentum: T.equilibrium_angle_sgdm(eta, wd, momentum),
    sq_norm=lambda eta, wd, sigma, dim, momentum: T.equilibrium_norm_sgdm(eta, wd, momentum, sigma) ** 2,
    prediction_hp=("momentum",), t_eq_slope=_sgdm_t_eq_slope))
register(OptimizerEntry(
    "adamw", lambda lr, wd, b1, b2, eps, mask: optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask),
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "mask": None}, "AdamW (decoupled weight decay)",
    schedule="adam", weight_decay="optional",
    angle=lambda eta, wd, b1, b2: T.equilibrium_angle_adamw(eta, wd, b1),
    sq_norm=_adamw_sq, prediction_hp=("b1", "b2"), t_eq_slope=_t0_slope))
register(OptimizerEntry(
    "adam-l2", lambda lr, wd, b1, b2, eps, mask: optax.chain(optax.add_decayed_weights(wd, mask=mask),
                                                             optax.adam(lr, b1=b1, b2=b2, eps=eps)),
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "mask": None}, "Adam with L2 weight decay in the gradient",
    schedule="adam",
    angle=lambda eta, wd, sigma, dim, b1: T.equilibrium_angle_adam_l2(eta, wd, b1, sigma, dim),   # gradient-dependent
    sq_norm=lambda eta, wd, sigma, dim, b1: None if dim is None else T.equilibrium_norm_adam_l2(eta, wd, sigma, dim) ** 2,
    prediction_hp=("b1",), angle_reads=("sigma", "dim")))
register(OptimizerEntry(
    "lion", lambda lr, wd, b1, b2, mask: optax.lion(lr, b1=b1, b2=b2, weight_decay=wd, mask=mask),
    {"b1": 0.9, "b2": 0.99, "mask": None}, "Lion (sign of interpolated momentum, decoupled WD)",
    schedule="adam",
    angle=lambda eta, wd, b1, b2: T.equilibrium_angle_lion_weighted(eta, wd, b1, b2),
    sq_norm=lambda eta, wd, sigma, dim, b1, b2: (
        None if dim is None else T.equilibrium_norm_lion_weighted(eta, wd, b1, b2, dim) ** 2),
    prediction_hp=("b1", "b2"), t_eq_slope=_t0_slope))
register(OptimizerEntry(
    "sgdc", lambda lr, wd, peak_lr, mask: sgdc(lr, wd, peak_lr=peak_lr, mask=mask), {"peak_lr": None, "mask": None},
    "SGD with schedule-corrected weight decay lambda_t = lambda eta_t / eta_max (Defazio 2025); "
    "learning_rate must be a schedule", angle=_sgd_angle, sq_norm=_sgd_sq, t_eq_slope=_t0_slope))
register(OptimizerEntry(
    "adamc", lambda lr, wd, peak_lr, b1, b2, eps, mask: adamc(lr, wd, peak_lr=peak_lr, b1=b1, b2=b2, eps=eps, mask=mask),
    {"peak_lr": None, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "mask": None},
    "AdamW with schedule-corrected weight decay (AdamC, Defazio 2025); learning_rate must be a schedule",
    schedule="adam", angle=lambda eta, wd, b1, b2: T.equilibrium_angle_adamw(eta, wd, b1),
    sq_norm=_adamw_sq, prediction_hp=("b1", "b2"), t_eq_slope=_t0_slope))
_rv = {"rotate": None, "per_neuron": True, "zero_mean": True}
register(OptimizerEntry(
    "rv-sgd-wd", lambda lr, wd, rotate, per_neuron, zero_mean: rotational_sgdm(
        lr, wd, 0.0, rotate=rotate, per_neuron=per_neuron, zero_mean=zero_mean), dict(_rv),
    "rotational SGD + WD (Kosson et al. 2024): rotating leaves keep their norm and turn by "
    "sqrt(2 eta lambda) per step from step 0", angle=_sgd_angle))
register(OptimizerEntry(
    "rv-sgdm", lambda lr, wd, momentum, rotate, per_neuron, zero_mean: rotational_sgdm(
        lr, wd, momentum, rotate=rotate, per_neuron=per_neuron, zero_mean=zero_mean),
    {"momentum": 0.9, **_rv}, "rotational SGD with momentum (Kosson et al. 2024)",
    angle=lambda eta, wd, momentum: T.equilibrium_angle_sgdm(eta, wd, momentum), prediction_hp=("momentum",)))
register(OptimizerEntry(
    "rv-adamw", lambda lr, wd, b1, b2, eps, rotate, per_neuron, zero_mean: rotational_adamw(
        lr, wd, b1, b2, eps, rotate=rotate, per_neuron=per_neuron, zero_mean=zero_mean),
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, **_rv}, "rotational AdamW (Kosson et al. 2024)",
    schedule="adam", angle=lambda eta, wd, b1: T.equilibrium_angle_adamw(eta, wd, b1), prediction_hp=("b1",)))
register(OptimizerEntry(
    "rv-lion", lambda lr, wd, b1, b2, rotate, per_neuron, zero_mean: rotational_lion(
        lr, wd, b1, b2, rotate=rotate, per_neuron=per_neuron, zero_mean=zero_mean),
    {"b1": 0.9, "b2": 0.99, **_rv}, "rotational Lion (Kosson et al. 2024); its target angle is "
    "theory.equilibrium_angle_lion, as in scaleinv.rotational.rotational_lion", schedule="adam",
    angle=lambda eta, wd, b1, b2: T.equilibrium_angle_lion(eta, wd, b1, b2), prediction_hp=("b1", "b2")))
# norm-controlling updates (scaleinv.radial): ``select`` picks the leaves they act on (default: ndim > 1)
register(OptimizerEntry(
    "hyperball-sgd", lambda lr, wd, select: hyperball(optax.sgd(lr), lr, select=select), {"select": None},
    "Hyperball with a plain-SGD inner update: W <- Norm(W - eta Norm(g) ||W0||) ||W0|| per matrix (Wen et al. "
    "2025); ||W|| = ||W0|| always, each step turns W by arctan(eta) exactly on a scale-invariant loss",
    weight_decay="none", angle=lambda eta, wd: hyperball_angle(eta)))
register(OptimizerEntry(
    "hyperball-adam", lambda lr, wd, b1, b2, eps, select: hyperball(optax.adam(lr, b1=b1, b2=b2, eps=eps), lr,
                                                                    select=select),
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "select": None},
    "AdamH: Hyperball with an Adam inner update (Wen et al. 2025); ||W|| = ||W0||; Adam's update has a radial "
    "part, so the angle per step is only bounded (no prediction)", schedule="adam", weight_decay="none"))
register(OptimizerEntry(
    "sgd-wd-brake", lambda lr, wd, outward, inward, mask, select: radial_brake(
        sgd_wd(lr, wd, mask=mask), outward=outward, inward=inward, select=select),
    {"outward": 0.25, "inward": 0.5, "mask": None, "select": None},
    "SGD + WD with the radial brake ||w|| <- ||w_prev|| + s (||w|| - ||w_prev||), s = outward / inward factor: "
    "the same equilibrium norm and angle as SGD + WD, the time to equilibrium from above 1/s_in times longer",
    angle=lambda eta, wd, inward: _sgd_angle(eta, wd), sq_norm=_sgd_sq, prediction_hp=("inward",),
    t_eq_slope=lambda eta, wd, inward: brake_t_eq_slope(eta, wd, inward)))
