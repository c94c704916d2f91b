"""The interactive explorer (``notebooks/09_explorer.py``): one run of a toy problem with one
optimizer, next to what :mod:`scaleinv.theory` predicts for it.

:func:`explore` runs :func:`toyproblems.run.run` (float64, jitted once per problem / optimizer /
step count; eta, lambda, init scale, C and sigma are traced, so moving one of them does not
recompile; the optimizer, the momentum and the MF's noise do) and returns the measured ||x_t||^2, angular update, effective LR eta/||x_t||^2 and
loss with the predictions; :func:`plot` draws the four panels. Nothing here is a formula:

* ||x||^2 equilibrium: ``theory.equilibrium_sq_norm`` (SGD+WD, with and without clipping: the
  exact fixed point of the constant-sigma norm map), ``theory.equilibrium_norm_sgdm`` (SGDM,
  first order in eta lambda), ``theory.equilibrium_norm_adamw`` (AdamW); the rotational wrapper
  keeps the initial norm (its construction, :mod:`scaleinv.rotational`);
* the exact ||x_t||^2 trajectory of plain SGD and SGD+WD on the constant-sigma toy:
  ``theory.norm_sq_update_orthogonal`` iterated from ||x_0||^2;
* the equilibrium angular update: ``theory.equilibrium_angle`` ("sgd", "sgdm", "adamw"), the
  rotational wrapper's target ``theory.equilibrium_angle_sgdm``;
* the effective LR: ``theory.effective_lr`` of the measured and of the predicted norm.

Problems (``Settings.problem``):

* ``"constant_sigma"`` (:func:`toyproblems.problems.constant_sigma`): ||grad L_gamma(x_bar)|| =
  sigma exactly; the noise slider is sigma. The predictions above hold with this sigma.
* ``"normalized_mf"`` (:func:`toyproblems.problems.normalized_mf`, d = 4, r = 2, group A is
  measured): the noise slider is the fraction of the d^2 entries left out of each step's
  minibatch (0 = full-batch GD). Its gradient is not constant: the norm predictions use
  sigma_eff^2 = mean of ||g_t||^2 ||x_t||^2 (= ||grad L(x_bar)||^2, scale invariance) over the
  second half of the run, as verify row C5.linreg does; at noise 0 the gradient vanishes at the
  optimum and no noise-driven equilibrium exists (GD+WD then runs to the edge of stability,
  ``theory.lyu2022``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from scaleinv import registry, theory
from toyproblems import problems as P
from toyproblems.run import run

__all__ = ["OPTIMIZERS", "PROBLEMS", "Settings", "Exploration", "explore", "plot"]

OPTIMIZERS: Dict[str, str] = {
    "sgd": "SGD (no WD)",
    "sgd_wd": "SGD+WD",
    "sgd_wd_clip": "SGD+WD+clipping",
    "sgdm": "SGDM+WD (L2 in the momentum)",
    "adamw": "AdamW",
    "rotational": "rotational SGDM (RV-SGDM)",
}
PROBLEMS: Dict[str, str] = {
    "constant_sigma": "constant-sigma toy (dim 32)",
    "normalized_mf": "normalized MF (d=4, r=2)",
}
MF_D, MF_R = 4, 2


@dataclass(frozen=True)
class Settings:
    """One explorer configuration (the sliders). ``weight_decay`` is lambda; ``C`` the relative
    global clipping constant (only ``sgd_wd_clip``); ``noise``: sigma on the constant-sigma toy,
    the left-out fraction of entries on the normalized MF; ``momentum``: SGDM's alpha and
    AdamW's beta1."""

    problem: str = "constant_sigma"
    optimizer: str = "sgd_wd"
    eta: float = 0.1
    weight_decay: float = 0.05
    init_scale: float = 10.0
    C: float = 2.0
    noise: float = 1.0
    steps: int = 2000
    momentum: float = 0.9
    seed: int = 0
    dim: int = 32

    def check(self) -> "Settings":
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {list(PROBLEMS)}, got {self.problem!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("eta", "init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.optimizer != "sgd" and not self.weight_decay > 0:
            raise ValueError(f"weight_decay must be > 0 for {self.optimizer!r}, got {self.weight_decay}")
        if self.optimizer == "sgd_wd_clip" and not self.C > 1:
            raise ValueError(f"C must be > 1 (the clipping constant), got {self.C}")
        if self.problem == "constant_sigma" and not self.noise > 0:
            raise ValueError(f"noise (sigma of the constant-sigma toy) must be > 0, got {self.noise}")
        if self.problem == "normalized_mf" and not 0 <= self.noise < 1:
            raise ValueError(f"noise (left-out fraction of the MF entries) must be in [0, 1), got {self.noise}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if int(self.steps) != self.steps or self.steps < 10:
            raise ValueError(f"steps must be an integer >= 10, got {self.steps}")
        return self


@dataclass
class Exploration:
    """Measured per-step arrays and the predictions (``None`` where theory predicts nothing)."""

    settings: Settings
    sq_norm: np.ndarray        # ||x_t||^2 (group A on the MF)
    angle: np.ndarray          # angle(x_t, x_{t+1}), rad
    effective_lr: np.ndarray   # theory.effective_lr(eta, ||x_t||)
    loss: np.ndarray           # L_gamma_t(x_t) (full-batch loss on the MF)
    clipped: np.ndarray        # bool, clipping fired at step t
    sigma: float               # sigma (constant-sigma) or sigma_eff (MF, measured)
    eq_sq_norm: Optional[float] = None
    angle_pred: Optional[float] = None
    norm_map: Optional[np.ndarray] = None   # exact ||x_t||^2 trajectory (theory), where known
    notes: Dict[str, str] = field(default_factory=dict)

    @property
    def eff_lr_pred(self) -> Optional[float]:
        if self.eq_sq_norm is None:
            return None
        return float(theory.effective_lr(self.settings.eta, np.sqrt(self.eq_sq_norm)))

    def tail(self, x: np.ndarray) -> float:
        """Mean over the last quarter of the run."""
        return float(np.mean(np.asarray(x)[-len(x) // 4:]))

    def ratios(self) -> Dict[str, float]:
        """Tail means over their predictions: ``sq_norm`` and ``angle`` (RMS), where predicted."""
        out = {}
        if self.eq_sq_norm is not None:
            out["sq_norm"] = self.tail(self.sq_norm) / self.eq_sq_norm
        if self.angle_pred is not None:
            out["angle"] = float(np.sqrt(self.tail(self.angle**2))) / self.angle_pred
        return out


def _make_problem(s: Settings, sigma):
    if s.problem == "constant_sigma":
        return P.constant_sigma(dim=s.dim, sigma=sigma), None
    batch = None if s.noise == 0 else max(1, int(round((1 - s.noise) * MF_D * MF_D)))
    prob = P.normalized_mf(d=MF_D, r=MF_R, batch=batch)
    return prob, {"A": True, "B": False}


# explorer key -> optimizer registry name (scaleinv.registry builds every transform; plain SGD is
# sgd-wd with weight_decay 0, so that SGD and SGD+WD share one compiled program)
REGISTRY_NAME: Dict[str, str] = {"sgd": "sgd-wd", "sgd_wd": "sgd-wd", "sgd_wd_clip": "sgd-wd-rgc",
                                 "sgdm": "sgdm", "adamw": "adamw", "rotational": "rv-sgdm"}


def _make_opt(name: str, eta, wd, C, momentum):
    reg = REGISTRY_NAME[name]
    # rotational: every leaf is one rotating tensor (the scale-invariant groups)
    hp = {"C": C, "momentum": momentum, "b1": momentum, "b2": 0.999, "eps": 1e-12,
          "rotate": lambda p: jax.tree.map(lambda _: True, p), "per_neuron": False, "zero_mean": False}
    return registry.make_from(reg, eta, wd, hp)


@partial(jax.jit, static_argnames=("s",))
def _simulate(s: Settings, eta, wd, init_scale, C, sigma):
    prob, mask = _make_problem(s, sigma)
    k_init, k_run = jax.random.split(jax.random.PRNGKey(s.seed))
    x0 = prob.init(init_scale, k_init)
    eval_fn = prob.meta["full_loss"] if s.problem == "normalized_mf" else None
    return run(prob.loss, _make_opt(s.optimizer, eta, wd, C, s.momentum), x0, s.steps, k_run,
               mask=mask, eval_fn=eval_fn)


def explore(settings: Settings | None = None, **kw) -> Exploration:
    """Run one configuration (``Settings`` fields as keywords override ``settings``) in float64
    and attach the predictions of :mod:`scaleinv.theory`."""
    s = replace(settings or Settings(), **kw).check()
    sigma_in = s.noise if s.problem == "constant_sigma" else 1.0
    # The traced hyper-parameters are zeroed in the static key, so a slider move reuses the compiled run.
    key = replace(s, optimizer="sgd_wd" if s.optimizer == "sgd" else s.optimizer,
                  eta=0.0, weight_decay=0.0, init_scale=0.0, C=0.0,
                  noise=s.noise if s.problem == "normalized_mf" else 0.0)
    with jax.enable_x64(True):
        wd = 0.0 if s.optimizer == "sgd" else s.weight_decay
        tr = _simulate(key, *(jnp.asarray(v, jnp.float64) for v in (s.eta, wd, s.init_scale, s.C, sigma_in)))
        tr = jax.tree.map(np.asarray, tr._replace(final=0))
    sq, gn = tr.sq_norm, tr.grad_norm
    half = slice(len(sq) // 2, None)
    sigma = s.noise if s.problem == "constant_sigma" else float(np.sqrt(np.mean(gn[half] ** 2 * sq[half])))
    ex = Exploration(s, sq, tr.angle, np.asarray(theory.effective_lr(s.eta, np.sqrt(sq))), tr.loss,
                     tr.clipped.astype(bool), sigma)
    eta, wd, dim = s.eta, s.weight_decay, s.dim if s.problem == "constant_sigma" else MF_D * MF_R
    if s.optimizer != "sgd":
        pred = registry.predict(REGISTRY_NAME[s.optimizer], eta, wd, sigma=sigma, dim=dim,
                                momentum=s.momentum, b1=s.momentum, b2=0.999)
        ex.angle_pred = float(pred["angle"])
        if s.optimizer == "rotational":
            ex.eq_sq_norm = float(sq[0])
            ex.notes["sq_norm"] = "the wrapper keeps the initial norm"
        else:
            ex.eq_sq_norm = float(pred["sq_norm"])
    else:
        ex.notes["sq_norm"] = "no weight decay: no equilibrium, the norm only grows"
    if s.problem == "constant_sigma" and s.optimizer in ("sgd", "sgd_wd"):
        w = 0.0 if s.optimizer == "sgd" else wd
        m = np.empty(s.steps)
        m[0] = sq[0]
        for t in range(1, s.steps):
            m[t] = theory.norm_sq_update_orthogonal(m[t - 1], eta, w, sigma)
        ex.norm_map = m
    if s.problem == "normalized_mf" and ex.eq_sq_norm is not None and s.optimizer != "rotational":
        ex.notes["sq_norm"] = f"with sigma_eff = {sigma:.3g} measured over the second half"
    return ex


def plot(ex: Exploration, fig=None):
    """Four panels: ||x||^2 vs the equilibrium (and the exact norm map), angular update vs its
    prediction, effective LR, loss. Returns the figure."""
    import matplotlib.pyplot as plt

    s = ex.settings
    if fig is None:
        fig = plt.figure(figsize=(11, 7))
    fig.clear()
    ax = fig.subplots(2, 2).ravel()
    t = np.arange(len(ex.sq_norm))
    ax[0].plot(t, ex.sq_norm, label="measured")
    if ex.norm_map is not None:
        ax[0].plot(t, ex.norm_map, "k:", label="exact norm map (theory)")
    if ex.eq_sq_norm is not None:
        ax[0].axhline(ex.eq_sq_norm, color="C3", ls="--", label="derived equilibrium")
    ax[0].set_yscale("log"); ax[0].set_title(r"$\|x_t\|^2$" + (f"  ({ex.notes['sq_norm']})" if "sq_norm" in ex.notes
                                                              else ""), fontsize=9)
    ax[1].plot(t, ex.angle, lw=0.6, label="measured")
    if ex.angle_pred is not None:
        ax[1].axhline(ex.angle_pred, color="C3", ls="--", label="predicted equilibrium")
    ax[1].set_yscale("log"); ax[1].set_title("angular update (rad / step)", fontsize=9)
    ax[2].plot(t, ex.effective_lr, label=r"$\eta/\|x_t\|^2$")
    if ex.eff_lr_pred is not None:
        ax[2].axhline(ex.eff_lr_pred, color="C3", ls="--", label="at the predicted equilibrium")
    ax[2].set_yscale("log"); ax[2].set_title("effective learning rate", fontsize=9)
    ax[3].plot(t, ex.loss, lw=0.6)
    if ex.clipped.any():
        ax[3].plot(t[ex.clipped], ex.loss[ex.clipped], "r.", ms=3, label=f"clipped ({int(ex.clipped.sum())} steps)")
    ax[3].set_title("loss" + (" (full batch)" if s.problem == "normalized_mf" else ""), fontsize=9)
    for a in ax:
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.suptitle(f"{PROBLEMS[s.problem]}, {OPTIMIZERS[s.optimizer]}: eta={s.eta:g}, lambda={s.weight_decay:g}, "
                 f"init {s.init_scale:g}, C={s.C:g}, noise={s.noise:g}", fontsize=10)
    fig.tight_layout()
    return fig
