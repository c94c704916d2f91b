"""Weight decay sets a memory timescale (Wang & Aitchison 2024/25): the influence of one step's
gradient on later weights decays like (1 - eta lambda)^(t - s), tau = 1/(eta lambda).

Same conventions as :mod:`toyproblems.claims_rotational`. Toy: pure-noise gradients (L_gamma(W) =
<xi_gamma, W>, the gradient does not depend on W), so the effect of a gradient perturbation is
purely the optimizer's memory. Each configuration runs twice with the SAME noise: once as is, once
with the gradient of step s changed by delta (AdamW: ||delta|| = 1e-4 sqrt(d), first order; SGD is
linear, ||delta|| = sqrt(d)); measured: ||W'_{s+L} - W_{s+L}|| / ||delta|| for L = 1 .. 5 tau. Predictions:
:func:`scaleinv.theory.wang2025.gradient_influence` (exact for SGD + WD; AdamW to first order in delta
with Adam's v taken as its stationary value 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaleinv.report import Row, close, verdict
from scaleinv.theory import wang2025 as W25
from toyproblems.plotting import new_figure, save_figure

__all__ = ["TIMESCALE_CLAIMS", "simulate_influence"]

SRC = "Wang & Aitchison 2024/25 (arXiv 2405.13698); influence derived here"
DIM = 256
DELTA = 1e-4
_CACHE: Dict = {}


B2_MAIN = 0.95        # Adam's v memory 1/(1 - beta2) = 20 steps < tau: the EMA view applies
B2_LONG = 0.99        # 100 steps > tau = 50: the gradient also acts through v, for longer than tau


def _configs():
    """(beta1 (0 = SGD + WD), eta, lambda, beta2): eta lambda in {0.01, 0.02}; the last row has a
    second-moment memory longer than tau."""
    out = []
    for el in (0.01, 0.02):
        out.append((0.0, 0.1, el / 0.1, B2_MAIN))
        out += [(b1, 0.01, el / 0.01, B2_MAIN) for b1 in (0.5, 0.9)]
    out.append((0.9, 0.01, 2.0, B2_LONG))
    return np.array(out, dtype=float)


def _noise_loss(W, key):
    return jnp.vdot(jax.random.normal(key, W.shape, W.dtype), W)


def simulate_influence(seed: int, quick: bool) -> dict:
    """Per config: ||Delta W_{s+L}|| / ||delta|| for L = 1..Lmax (mean over seeds); cached."""
    key = (seed, quick)
    if key in _CACHE:
        return _CACHE[key]
    cfg = _configs()
    s = 300                                     # Adam's v (beta2 = 0.99) stationary by then
    Lmax = int(5 / 0.01)
    seeds = 2 if quick else 8
    g = jax.grad(_noise_loss)

    def one(c, k):
        b1, eta, wd, b2 = c[0], c[1], c[2], c[3]
        sgd = optax.chain(optax.add_decayed_weights(wd), optax.sgd(eta))
        adam = optax.adamw(eta, b1=jnp.maximum(b1, 1e-6), b2=b2, eps=1e-12, weight_decay=wd)
        kd, kn = jax.random.split(k)
        # SGD is linear in the gradient (any size works; 1 avoids cancellation); AdamW: first order
        delta = jnp.where(b1 == 0, 1.0, DELTA) * jax.random.normal(kd, (DIM,))

        def run(pert):
            W0 = jnp.zeros(DIM)

            def step(carry, t):
                W, s1, s2 = carry
                gt = g(W, jax.random.fold_in(kn, t)) + jnp.where(t == s, pert, 0.0) * delta
                u1, s1 = sgd.update(gt, s1, W)
                u2, s2 = adam.update(gt, s2, W)
                Wn = W + jnp.where(b1 == 0, u1, u2)
                return (Wn, s1, s2), Wn

            return jax.lax.scan(step, (W0, sgd.init(W0), adam.init(W0)), jnp.arange(s + Lmax))[1]

        dW = run(1.0) - run(0.0)                  # row i = W_{i+1}
        return jnp.linalg.norm(dW[s:s + Lmax], axis=1) / jnp.linalg.norm(delta)

    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(seed), len(cfg) * seeds).reshape(len(cfg), seeds, 2)
        infl = np.asarray(jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0))))(jnp.asarray(cfg), keys))
    L = np.arange(1, Lmax + 1)
    res = dict(cfg=cfg, L=L, infl=infl.mean(1), infl_seeds=infl, seeds=seeds,
               pred=np.array([W25.gradient_influence(c[1], c[2], L, beta1=c[0]) for c in cfg]))
    _CACHE[key] = res
    return res


def _name(c):
    return ("SGD+WD" if c[0] == 0 else f"AdamW beta1={c[0]:g}") + f", eta lambda={c[1] * c[2]:g}"


# ============================================================== M1: influence of one gradient
def claim_gradient_influence(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """||Delta W_{s+L}|| / ||delta|| = eta (1 - eta lambda)^(L-1) (SGD + WD, exact) and
    (eta/sqrt(v)) (1-b1)((1-eta lambda)^L - b1^L)/(1 - eta lambda - b1) (AdamW) for L = 1 .. 5 tau; and
    the decay time of the influence = 1/(-ln(1 - eta lambda)) ~ tau = 1/(eta lambda) for every optimizer."""
    r = simulate_influence(seed, quick)
    cfg, L = r["cfg"], r["L"]
    rows = []
    fig, ax = new_figure()
    sgd = np.where(cfg[:, 0] == 0)[0]
    adam = np.where((cfg[:, 0] > 0) & (cfg[:, 3] == B2_MAIN))[0]
    long_ = np.where(cfg[:, 3] == B2_LONG)[0]
    e_sgd = np.abs(r["infl"][sgd] / r["pred"][sgd] - 1)
    w = np.unravel_index(np.argmax(e_sgd), e_sgd.shape)
    rows.append(Row(
        "M1.1", SRC, "SGD+WD, pure-noise gradients: a gradient change delta at step s moves W_{s+L} by "
                     f"eta (1 - eta lambda)^(L-1) ||delta||, L = 1..{L[-1]} (exact: W is an EMA of the steps)",
        float(r["pred"][sgd][w]), float(r["infl"][sgd][w]), "max rel. err over L and configs <= 1e-9",
        verdict([close("influence (worst L)", float(r["infl"][sgd][w]), float(r["pred"][sgd][w]), rtol=1e-9)]),
        note=f"max rel. err {e_sgd.max():.1e}; eta lambda in {sorted(set((cfg[sgd, 1] * cfg[sgd, 2]).tolist()))}"))
    e_ad = np.abs(r["infl"][adam] / r["pred"][adam] - 1)
    w = np.unravel_index(np.argmax(e_ad), e_ad.shape)
    tol = 0.05
    rows.append(Row(
        "M1.2", SRC, f"AdamW (beta1 0.5, 0.9; beta2 {B2_MAIN}), pure noise: influence = (eta/sqrt(v)) (1-b1)((1-eta lambda)^L "
                     f"- b1^L)/(1-eta lambda-b1), v = 1, L = 1..{L[-1]}",
        round(float(r["pred"][adam][w]), 9), round(float(r["infl"][adam][w]), 9),
        f"max rel. err over L and configs <= {tol:.0%}",
        verdict([close("influence (worst L)", float(r["infl"][adam][w]), float(r["pred"][adam][w]), rtol=tol)]),
        note=f"max rel. err {e_ad.max():.2%} (worst: {_name(cfg[adam][w[0]])}, L = {L[w[1]]}); {r['seeds']} seeds; the "
             "rest is Adam's v (fluctuating per coordinate, and itself moved by delta, first order)"))
    taus, taus_pred = [], []
    for i in np.concatenate([sgd, adam]):
        c = cfg[i]
        el = c[1] * c[2]
        sel = (L >= int(max(5.0 / (1.0 - c[0]), 0.5 / el))) & (L <= int(4.0 / el))
        taus.append(-1.0 / np.polyfit(L[sel], np.log(r["infl"][i][sel]), 1)[0])
        taus_pred.append(float(W25.wd_timescale_exact(c[1], c[2])))
    taus, taus_pred = np.array(taus), np.array(taus_pred)
    tol_t = 0.03
    rows.append(Row(
        "M1.3", SRC, "decay time of the influence (fit of ln ||Delta W_{s+L}|| over L in [max(5/(1-b1), tau/2), 4 tau]) "
                     "= 1/(-ln(1-eta lambda)) ~ tau = 1/(eta lambda), SGD+WD and AdamW, independent of beta1",
        [round(float(v), 2) for v in taus_pred], [round(float(v), 2) for v in taus],
        f"rel. err <= {tol_t:.0%} per config",
        verdict([close("decay time", taus.tolist(), taus_pred.tolist(), rtol=tol_t)]),
        note="configs " + "; ".join(_name(c) for c in cfg[np.concatenate([sgd, adam])])))
    i = int(long_[0])
    c = cfg[i]
    el = c[1] * c[2]
    tail = L >= int(6.0 / el)
    tau_tail = -1.0 / np.polyfit(L[tail], np.log(r["infl"][i][tail]), 1)[0]
    tau_v = -1.0 / np.log(B2_LONG)
    excess = float(r["infl"][i][-1] / r["pred"][i][-1])
    rows.append(Row(
        "M1.4", SRC + "; limitation found here",
        f"AdamW with beta2 = {B2_LONG} (second-moment memory 1/(1-beta2) = {1 / (1 - B2_LONG):.0f} steps > tau = "
        f"{1 / el:.0f}): the gradient also acts through Adam's v, and the tail of its influence decays with "
        "1/(-ln beta2), NOT with tau (the EMA view holds for the updates, not for the gradients)",
        round(tau_v, 2), round(float(tau_tail), 2), "rel. err <= 15% (tail fit over L >= 6 tau; crossover from tau)",
        verdict([close("tail decay time", float(tau_tail), tau_v, rtol=0.15)]),
        note=f"at L = {L[-1]} the influence is {excess:.1f} x the EMA prediction; with beta2 = 0.999 (the default) "
             "this second-moment memory is 1000 steps"))
    for j, i in enumerate(np.concatenate([sgd, adam, long_])):
        c = cfg[i]
        el = c[1] * c[2]
        ax.plot(L * el, r["infl"][i] / c[1], color=f"C{j}", lw=1.2, label=_name(c) + (f", beta2 {c[3]:g}" if c[0] > 0 else ""))
        ax.plot(L * el, r["pred"][i] / c[1], color="k", ls=":", lw=0.8, label="EMA theory" if j == 0 else None)
    ax.set(yscale="log", xlabel="L eta lambda = (t - s) / tau", ylabel="||Delta W_{s+L}|| / (eta ||delta||)",
           title="M1: one gradient's memory, tau = 1/(eta lambda)")
    ax.legend(fontsize=6)
    save_figure(fig, Path(out_dir) / "M1.png")
    return rows


TIMESCALE_CLAIMS = [claim_gradient_influence]
