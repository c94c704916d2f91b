"""The optimizer report card (``scaleinv card OPTIMIZER``): what the theory of scale-invariant
training says about one optimizer, measured on the project's toys beside the registry's prediction.

Subjects: a name of :mod:`scaleinv.registry` (run at the card's eta, lambda of :data:`CARD_HP`;
its predictions from ``registry.predict`` / ``registry.predict_t_eq_slope``) or a user factory
``module:factory`` returning an optax ``GradientTransformation`` (run as returned; no prediction).
The prediction of a row is computed from the registry alone, before and apart from the run; a
row without one says "no prediction", never the measurement.

Toys (float64, seed-controlled; :mod:`toyproblems.problems`):

* ``vector`` -- :func:`~toyproblems.problems.constant_sigma` (d = 64, sigma = 1), one weight
  ("per matrix"), runs from ||x(0)|| = c for the init scales of the card, plus one run of the loss
  10 L. Rows: the equilibrium ||x||^2 (tail mean) and RMS angle per step at c = 1; the steps
  t_eq until ||x_t||^2 first enters [s/2, 2 s] (s the measured equilibrium) and the least-squares
  slope of t_eq against ln c^2 over the inits with c^2 > 4 s; the ratios of the equilibrium
  ||x||^2 and angle at 10 L over L (loss rescaling) and from ||x(0)|| = 10 over 1 (parameter
  rescaling; Li et al. 2022, Lemma 2.4, docs/PAPER_NOTES.md).
* ``neuron`` -- 8 neurons (rows) of d = 32, each its own constant-sigma loss (the sum is scale
  invariant per row): ||x_i||^2 and angle per neuron (mean and spread over the rows), and the
  matrix's ||X||^2 and angle.
* ``ex2`` -- the talk's Ex 2 (:func:`~toyproblems.problems.mf`, unbalanced init alpha): steps until
  the loss < 1e-3 for alpha = 1..100.
* ``nmf`` -- the normalized MF (:func:`~toyproblems.problems.normalized_mf`): steps until the full
  loss < 1e-3 against the init scale alpha, and their slope in ln alpha^2 for alpha >= 10.
* ``state`` -- optimizer state bytes per parameter, from the shapes and dtypes of
  ``tx.init(params)`` (``jax.eval_shape``) on a float32 {kernel 128x128, bias 128} pytree.

A prediction row passes when |measured / predicted - 1| <= its tolerance (stated per row with the
measurement's noise: 2 standard errors of the tail mean by batch means); an equilibrium row first
checks stationarity (the two halves of the tail agree within 5 %), else it reports "no
equilibrium". A toy run that raises, turns non-finite or exceeds its time limit (checked between
chunks of steps) gives rows with status ``failed``, never a crash.

Longer than 400 lines on purpose: the toys share one chunked runner and one row builder, and the
figure page draws every toy's arrays; splitting them would spread one card over several files.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaleinv import registry
from scaleinv.report import jsonable
from toyproblems import problems as P

__all__ = ["CARD_HP", "CardRow", "Subject", "subject", "load_factory", "factory_subject", "check_transform",
           "card", "write_card", "write_index", "STATUSES", "TOYS"]

STATUSES = ("pass", "fail", "measured", "failed")
SIGMA, DIM, ROWS, ROW_DIM = 1.0, 64, 8, 32
LOSS_SCALE, PARAM_SCALE = 10.0, 10.0
EPS_SOLVE = 1e-3
TOL = 0.05             # relative tolerance of the equilibrium / ratio / slope rows (see the row texts)
STATIONARY = 0.05      # two halves of the tail within 5 %: an equilibrium
TAIL = 0.4             # the tail = the last 40 % of the steps
# card hyper-parameters (eta, lambda) per registered name: eta lambda = 2e-3 << 1 (the theory's regime),
# SGDM at eta lambda = 2e-4 < (1 - alpha)^2 / (2 (1 + alpha)) = 2.6e-3 (not under-damped, docs of R1-R5)
# Hyperball: eta is the angle per step itself (arctan(eta)), no weight decay
CARD_HP: Dict[str, tuple] = {"sgd": (0.1, 0.0), "sgdm": (0.1, 0.002), "lion": (0.001, 2.0), "rv-lion": (0.001, 2.0),
                             "hyperball-sgd": (0.05, 0.0), "hyperball-adam": (0.05, 0.0)}
FAMILY_HP = {"sgd": (0.1, 0.02), "adam": (0.01, 0.2)}


def _mode(quick: bool) -> Dict[str, Any]:
    if quick:
        return dict(steps=4000, scales=[1e-2, 1.0, 1e1, 1e2], ex2_alphas=[1.0, 10.0, 100.0], ex2_steps=4000,
                    nmf_alphas=[1.0, 1e2, 1e4], nmf_steps=6000, time_limit=60.0)
    return dict(steps=12000, scales=list(np.logspace(-2, 2, 9)), ex2_alphas=[1.0, 3.0, 10.0, 30.0, 100.0],
                ex2_steps=20000, nmf_alphas=list(np.logspace(0, 4, 5)), nmf_steps=12000, time_limit=300.0)


# ---------------------------------------------------------------------------------------- subjects
@dataclasses.dataclass
class Subject:
    """The optimizer a card is about: ``make(toy)`` builds its transform for a toy ("vector",
    "neuron", "mf", "state"); ``predict`` is the registry name (``None``: no prediction)."""

    label: str
    make: Callable[[str], optax.GradientTransformation]
    registry_name: Optional[str] = None
    eta: Optional[float] = None
    weight_decay: Optional[float] = None
    summary: str = ""


def _all_leaves(p):
    return jax.tree.map(lambda _: True, p)


def subject(name: str) -> Subject:
    """A registered optimizer at the card's (eta, lambda) (:data:`CARD_HP`, else by schedule family)."""
    e = registry.get(name)
    eta, wd = CARD_HP.get(name, FAMILY_HP[e.schedule])
    wd = 0.0 if e.weight_decay == "none" else wd

    def make(toy: str):
        hp: Dict[str, Any] = {}
        if "rotate" in e.defaults and toy != "state":   # every leaf of a toy is one scale-invariant weight
            hp.update(rotate=_all_leaves, per_neuron=toy == "neuron")
        if "select" in e.defaults and toy != "state":   # Hyperball / radial brake: on every toy leaf
            hp["select"] = _all_leaves
        lr = optax.constant_schedule(eta) if "peak_lr" in e.defaults else eta
        return registry.make(name, lr, wd, **hp)

    return Subject(name, make, name, eta, wd, e.summary)


def check_transform(tx, what: str) -> optax.GradientTransformation:
    """``tx`` if it is an optax GradientTransformation whose init/update run one step on the vector
    toy with finite updates of the right shape; ValueError naming ``what`` otherwise."""
    if not isinstance(tx, optax.GradientTransformation) or not (callable(tx.init) and callable(tx.update)):
        raise ValueError(f"{what} must return an optax.GradientTransformation, got {type(tx).__name__}")
    x = jnp.ones((DIM,)) / math.sqrt(DIM)
    try:
        u, _ = tx.update(jnp.full((DIM,), 0.01), tx.init(x), x)
    except Exception as e:   # noqa: BLE001 - any failure of the user's transform is bad input
        raise ValueError(f"{what}: its transform raised {type(e).__name__} on one step of a {DIM}-vector: "
                         f"{' '.join(str(e).split())[:200]}") from None
    if jnp.shape(u) != x.shape:
        raise ValueError(f"{what}: its update has shape {jnp.shape(u)} for parameters of shape {x.shape}")
    return tx


class _Timeout(Exception):
    pass


def load_factory(spec: str, timeout: float = 30.0) -> optax.GradientTransformation:
    """Import ``package.module:factory`` (or ``path/file.py:factory``; the loading of
    ``scaleinv.audit.factory``), call ``factory()`` within ``timeout`` seconds (SIGALRM, main
    thread) and check its transform (:func:`check_transform`). ValueError with one readable
    message for every way it can fail (no module, no attribute, raises, exits, loops, wrong type)."""
    import importlib
    import importlib.util
    import signal
    import threading

    if ":" not in spec:
        raise ValueError(f"factory must be 'module:function' (or 'path/file.py:function'), got {spec!r}")
    mod_name, fn_name = spec.rsplit(":", 1)
    if not fn_name.isidentifier():
        raise ValueError(f"{fn_name!r} is not a function name (in {spec!r})")
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")

    def on_alarm(*_):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm) if use_alarm else None
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
    try:
        if mod_name.endswith(".py"):
            if not Path(mod_name).is_file():
                raise ValueError(f"file {mod_name!r} does not exist")
            sp = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            if sp is None or sp.loader is None:
                raise ValueError(f"cannot import file {mod_name!r}")
            mod = importlib.util.module_from_spec(sp)
            sp.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
        if not hasattr(mod, fn_name):
            raise ValueError(f"module {mod_name!r} has no attribute {fn_name!r}")
        tx = getattr(mod, fn_name)()
    except _Timeout:
        raise ValueError(f"{spec} did not return within {timeout:g} s") from None
    except ValueError:
        raise
    except SystemExit as e:
        raise ValueError(f"{spec} called SystemExit({e.code!r}) instead of returning") from None
    except ModuleNotFoundError as e:
        raise ValueError(f"cannot import {mod_name!r}: {e}") from None
    except Exception as e:   # noqa: BLE001 - the user's code: any exception is bad input
        raise ValueError(f"{spec} raised {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return check_transform(tx, spec)


def factory_subject(spec: str, tx: optax.GradientTransformation) -> Subject:
    """A user factory's transform (already loaded and checked), run as returned: no prediction."""
    return Subject(spec, lambda toy: tx, None, None, None, f"user factory {spec}")


# ---------------------------------------------------------------------------------------- runner
class ToyFailed(Exception):
    pass


def _runner(loss_fn, tx, record, chunk):
    """Jitted chunk of ``chunk`` steps, vmapped over configurations (x, state, key, loss scale)."""
    vg = jax.value_and_grad(loss_fn)

    def step(carry, t):
        x, s, key, c = carry
        val, g = vg(x, jax.random.fold_in(key, t), c)
        u, s = tx.update(g, s, x)
        xn = optax.apply_updates(x, u)
        return (xn, s, key, c), record(x, xn, val)

    def one(x, s, key, c, t0):
        (x, s, _, _), rec = jax.lax.scan(step, (x, s, key, c), t0 + jnp.arange(chunk))
        return x, s, rec

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None))), jax.jit(jax.vmap(tx.init))


def run_toy(loss_fn, tx, x0, keys, cs, steps, record, time_limit, chunks=8):
    """Run every configuration for ``steps`` steps in ``chunks`` jitted pieces; returns (records
    [config, step, ...] as NumPy, first non-finite step per config (-1 if none)). ToyFailed when
    the time limit passes (checked after each chunk) or every configuration is non-finite."""
    chunk = steps // chunks
    go, init = _runner(loss_fn, tx, record, chunk)
    t_start = time.time()
    x, s = x0, init(x0)
    recs, bad = [], np.full(len(cs), -1)
    for i in range(chunks):
        x, s, rec = go(x, s, keys, cs, i * chunk)
        rec = jax.tree.map(np.asarray, rec)
        recs.append(rec)
        finite = np.all(np.isfinite(np.asarray(x).reshape(len(cs), -1)), axis=1) if not isinstance(x, dict) else \
            np.all([np.all(np.isfinite(np.asarray(v).reshape(len(cs), -1)), axis=1) for v in x.values()], axis=0)
        bad = np.where((bad < 0) & ~finite, (i + 1) * chunk, bad)
        if np.all(bad >= 0):
            raise ToyFailed(f"non-finite iterates in every run (by step {int(bad.max())})")
        if time.time() - t_start > time_limit:
            raise ToyFailed(f"time limit {time_limit:.0f} s exceeded after {(i + 1) * chunk} of {steps} steps")
    return jax.tree.map(lambda *a: np.concatenate(a, axis=1), *recs), bad


# ---------------------------------------------------------------------------------------- rows
@dataclasses.dataclass
class CardRow:
    id: str
    toy: str
    quantity: str
    predicted: Any          # a number, or "no prediction"
    measured: Any           # a number, a list, or a string ("no equilibrium ...", "failed: ...")
    tolerance: str
    status: str             # pass | fail (against a prediction) | measured (no prediction) | failed (toy)
    note: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


NO_PRED = "no prediction"


def _compare(rid, toy, quantity, pred, meas, noise_rel, note="", tol=TOL):
    """A row: measured vs predicted within ``tol`` (relative), or "measured" without a prediction."""
    noise = f"; noise (2 s.e.) {100 * noise_rel:.2g} %" if noise_rel is not None else ""
    if pred is None:
        return CardRow(rid, toy, quantity, NO_PRED, meas, "-" + noise, "measured", note)
    if isinstance(meas, str):
        return CardRow(rid, toy, quantity, float(pred), meas, f"|meas/pred - 1| <= {tol:g}{noise}", "fail", note)
    ok = abs(meas / pred - 1.0) <= tol
    return CardRow(rid, toy, quantity, float(pred), float(meas), f"|meas/pred - 1| <= {tol:g}{noise}",
                   "pass" if ok else "fail", note)


def _tail(a, steps):
    return a[..., int((1 - TAIL) * steps):]


def _stat(x):
    """(mean, 2 s.e. relative by 10 batch means, drift = second half / first half - 1) of a 1-D tail."""
    m = float(np.mean(x))
    blocks = np.array_split(x, 10)
    se = float(np.std([b.mean() for b in blocks], ddof=1) / math.sqrt(10))
    h = len(x) // 2
    drift = float(np.mean(x[h:]) / np.mean(x[:h]) - 1.0)
    return m, 2 * se / abs(m) if m else float("inf"), drift


def _equilibrium(sq, ang):
    """(sq mean, sq noise, rms angle, angle noise) or a "no equilibrium" string."""
    m, n, drift = _stat(sq)
    if not math.isfinite(m) or abs(drift) > STATIONARY:
        return f"no equilibrium: ||x||^2 drifts {100 * drift:+.1f} % over the tail"
    a2, na, _ = _stat(ang**2)
    return m, n, math.sqrt(a2), na / 2


def _first_hit(mask):
    hit = np.argmax(mask, axis=-1).astype(float)
    return np.where(mask.any(axis=-1), hit, np.inf)


# ---------------------------------------------------------------------------------------- the toys
def _pred(sub: Subject, **kw):
    if sub.registry_name is None:
        return {"angle": None, "sq_norm": None}
    return registry.predict(sub.registry_name, sub.eta, sub.weight_decay, **kw)


def _slope_pred(sub: Subject):
    return None if sub.registry_name is None else registry.predict_t_eq_slope(sub.registry_name, sub.eta,
                                                                             sub.weight_decay)


def _vector_toy(sub, m, seed, figs):
    prob = P.constant_sigma(DIM, SIGMA)
    scales = list(m["scales"])
    cfg_scale = np.array(scales + [1.0])
    cfg_c = np.array([1.0] * len(scales) + [LOSS_SCALE])
    kx, kr = jax.random.split(jax.random.PRNGKey(seed))
    base = prob.init(1.0, kx)   # one direction for every run; ||x(0)|| = scale
    x0 = jnp.asarray(cfg_scale)[:, None] * base[None]
    keys = jnp.stack([kr] * len(cfg_c))   # the same gradient noise in every run
    rec = lambda x, xn, v: (jnp.sum(x**2), _angle(x, xn))   # noqa: E731
    (sq, ang), bad = run_toy(lambda x, k, c: c * prob.loss(x, k), sub.make("vector"), x0, keys, jnp.asarray(cfg_c),
                             m["steps"], rec, m["time_limit"])
    figs["vector"] = dict(sq=sq, ang=ang, scales=scales, bad=bad)
    steps, rows = m["steps"], []
    i1, i10, iL = scales.index(1.0), scales.index(PARAM_SCALE), len(scales)
    p1, p10 = _pred(sub, sigma=SIGMA, dim=DIM), _pred(sub, sigma=LOSS_SCALE * SIGMA, dim=DIM)
    eqs = {i: (_equilibrium(_tail(sq[i], steps), _tail(ang[i], steps)) if bad[i] < 0 else
               f"non-finite iterates by step {bad[i]}") for i in (i1, i10, iL)}
    e1 = eqs[i1]
    figs["vector"]["eq"] = e1 if not isinstance(e1, str) else None
    figs["vector"]["pred"] = p1
    note = f"d={DIM}, sigma={SIGMA}, ||x(0)||=1, tail = last {int(100 * TAIL)} % of {steps} steps"
    rows.append(_compare("equilibrium.sq_norm", "vector", "equilibrium ||x||^2 (per matrix)", p1["sq_norm"],
                         e1 if isinstance(e1, str) else e1[0], None if isinstance(e1, str) else e1[1], note))
    rows.append(_compare("equilibrium.angle", "vector", "equilibrium angular update per step, RMS (rad, per matrix)",
                         p1["angle"], e1 if isinstance(e1, str) else e1[2], None if isinstance(e1, str) else e1[3],
                         note))
    # time to equilibrium against ln c^2
    s_eq = None if isinstance(e1, str) else e1[0]
    pred_slope = _slope_pred(sub)
    figs["vector"]["pred_slope"] = pred_slope
    if s_eq is None:
        rows.append(_compare("t_eq.slope", "vector", "d t_eq / d ln ||x(0)||^2 (inits above the equilibrium)",
                             pred_slope, "not measurable: no equilibrium at ||x(0)|| = 1", None))
    else:
        sqs = sq[:len(scales)]
        t_eq = _first_hit((sqs >= s_eq / 2) & (sqs <= 2 * s_eq))
        t_eq = np.where(bad[:len(scales)] < 0, t_eq, np.inf)
        figs["vector"]["t_eq"] = t_eq
        above = (np.array(scales) ** 2 > 4 * s_eq) & np.isfinite(t_eq)
        detail = f"t_eq per init scale {dict(zip([f'{c:g}' for c in scales], t_eq.tolist()))}; band [s/2, 2 s], s = {s_eq:.4g}"
        if above.sum() < 2:
            rows.append(_compare("t_eq.slope", "vector", "d t_eq / d ln ||x(0)||^2 (inits above the equilibrium)",
                                 pred_slope, f"not measurable: {int(above.sum())} init(s) above 4 s reached the band",
                                 None, detail))
        else:
            lc = np.log(np.array(scales)[above] ** 2)
            slope = float(np.polyfit(lc, t_eq[above], 1)[0])
            # +-1 step on each t_eq over the spanned ln c^2: the rounding noise of the slope
            rows.append(_compare("t_eq.slope", "vector", "d t_eq / d ln ||x(0)||^2 (inits above the equilibrium)",
                                 pred_slope, slope, 2.0 / (np.ptp(lc) * abs(slope)) if slope else None, detail))
            figs["vector"]["slope"] = slope
    # invariance ratios
    for rid, j, what, pa, pb in (("invariance.loss", iL, f"L -> {LOSS_SCALE:g} L", p10, p1),
                                 ("invariance.params", i10, f"||x(0)|| -> {PARAM_SCALE:g} ||x(0)||", p1, p1)):
        ej = eqs[j]
        for q, k in (("sq_norm", 0), ("angle", 2)):
            pr = None if pa[q] is None or pb[q] is None else float(pa[q]) / float(pb[q])
            if isinstance(ej, str) or isinstance(e1, str):
                meas: Any = ej if isinstance(ej, str) else e1
                noise = None
            else:
                meas = ej[k] / e1[k]
                noise = math.hypot(ej[k + 1], e1[k + 1])
            label = "equilibrium ||x||^2" if q == "sq_norm" else "RMS angle"
            note = ("the registry's equilibrium has no init-scale argument: predicted ratio 1"
                    if rid == "invariance.params" and pr is not None else
                    "predicted: registry prediction at sigma = 10 over sigma = 1" if pr is not None else "")
            rows.append(_compare(f"{rid}.{q}", "vector", f"{label} ratio under {what}", pr, meas, noise, note))
    return rows


def _angle(x, xn, axis=None):
    """2 atan2(||a - b||, ||a + b||) of the unit vectors (accurate for tiny angles), over ``axis``."""
    na = jnp.sqrt(jnp.sum(x**2, axis=axis, keepdims=axis is not None))
    nb = jnp.sqrt(jnp.sum(xn**2, axis=axis, keepdims=axis is not None))
    a, b = x / na, xn / nb
    return 2.0 * jnp.arctan2(jnp.sqrt(jnp.sum((a - b) ** 2, axis=axis)), jnp.sqrt(jnp.sum((a + b) ** 2, axis=axis)))


def _neuron_toy(sub, m, seed, figs):
    def loss(X, key, c):
        k1 = jax.random.split(key)[0]
        xi = jax.random.normal(k1, X.shape, X.dtype)
        xi = xi / jnp.linalg.norm(xi, axis=1, keepdims=True)
        cos = jnp.clip(jnp.sum(xi * X, axis=1) / jnp.linalg.norm(X, axis=1), -1.0 + 1e-15, 1.0 - 1e-15)
        return c * SIGMA * jnp.sum(jnp.arccos(cos))

    kx, kr = jax.random.split(jax.random.PRNGKey(seed + 1))
    v = jax.random.normal(kx, (ROWS, ROW_DIM))
    x0 = (v / jnp.linalg.norm(v, axis=1, keepdims=True))[None]

    def rec(x, xn, val):
        return jnp.sum(x**2, axis=1), _angle(x, xn, axis=1), jnp.sum(x**2), _angle(x, xn)

    (sq_r, ang_r, sq_m, ang_m), bad = run_toy(loss, sub.make("neuron"), x0, kr[None], jnp.ones(1), m["steps"], rec,
                                              m["time_limit"])
    steps = m["steps"]
    figs["neuron"] = dict(sq=sq_r[0], pred=_pred(sub, sigma=SIGMA, dim=ROW_DIM))
    p = figs["neuron"]["pred"]
    note = f"{ROWS} neurons of d={ROW_DIM}, each its own constant-sigma loss (sigma={SIGMA})"
    rows = []
    if bad[0] >= 0:
        msg = f"non-finite iterates by step {bad[0]}"
        return [CardRow(f"neuron.{q}", "neuron", q, NO_PRED, msg, "-", "failed", note)
                for q in ("sq_norm", "angle", "matrix_sq_norm", "matrix_angle")]
    per = [_equilibrium(_tail(sq_r[0, :, i], steps), _tail(ang_r[0, :, i], steps)) for i in range(ROWS)]
    if any(isinstance(e, str) for e in per):
        msg = next(e for e in per if isinstance(e, str))
        rows += [_compare("neuron.sq_norm", "neuron", "equilibrium ||x_i||^2 per neuron (mean over neurons)",
                          p["sq_norm"], msg, None, note),
                 _compare("neuron.angle", "neuron", "RMS angle per step per neuron (mean over neurons)",
                          p["angle"], msg, None, note)]
    else:
        sqs, angs = np.array([e[0] for e in per]), np.array([e[2] for e in per])
        rng = f"; neurons range {sqs.min():.4g}..{sqs.max():.4g} (||x_i||^2), {angs.min():.4g}..{angs.max():.4g} (angle)"
        rows += [_compare("neuron.sq_norm", "neuron", "equilibrium ||x_i||^2 per neuron (mean over neurons)",
                          p["sq_norm"], float(sqs.mean()), float(np.std(sqs) / sqs.mean() * 2 / math.sqrt(ROWS)),
                          note + rng),
                 _compare("neuron.angle", "neuron", "RMS angle per step per neuron (mean over neurons)",
                          p["angle"], float(angs.mean()), float(np.std(angs) / angs.mean() * 2 / math.sqrt(ROWS)),
                          note + rng)]
    em = _equilibrium(_tail(sq_m[0], steps), _tail(ang_m[0], steps))
    pm = None if p["sq_norm"] is None else ROWS * float(p["sq_norm"])
    rows += [_compare("neuron.matrix_sq_norm", "neuron", "equilibrium ||X||^2 of the matrix", pm,
                      em if isinstance(em, str) else em[0], None if isinstance(em, str) else em[1],
                      "predicted: rows x the per-neuron prediction" if pm is not None else note),
             _compare("neuron.matrix_angle", "neuron", "RMS angle per step of the matrix", p["angle"],
                      em if isinstance(em, str) else em[2], None if isinstance(em, str) else em[3],
                      "predicted: the per-neuron angle (equal neurons)" if p["angle"] is not None else note)]
    return rows


def _mf_toy(sub, m, seed, figs, normalized: bool):
    prob = P.normalized_mf() if normalized else P.mf()
    alphas = list(m["nmf_alphas"] if normalized else m["ex2_alphas"])
    steps = m["nmf_steps"] if normalized else m["ex2_steps"]
    full = prob.meta["full_loss"] if normalized else (lambda p: prob.loss(p))
    x0 = jax.vmap(prob.init)(jnp.asarray(alphas, float))
    keys = jnp.stack([jax.random.PRNGKey(seed)] * len(alphas))
    (L,), bad = run_toy(lambda p, k, c: prob.loss(p), sub.make("mf"), x0, keys, jnp.ones(len(alphas)), steps,
                        lambda x, xn, v: (full(x),), m["time_limit"])
    hits = _first_hit(np.where(np.isfinite(L), L, np.inf) < EPS_SOLVE)
    name = "nmf" if normalized else "ex2"
    figs[name] = dict(alphas=alphas, hits=hits, L=L, bad=bad)
    rows = []
    what = "normalized MF 1/2||AB^T/||AB^T|| - Y||^2" if normalized else "Ex 2 unbalanced MF 1/2||AB^T - Y||^2"
    for a, h, b, fin in zip(alphas, hits, bad, L[:, -1]):
        if b >= 0 and not np.isfinite(h):
            rows.append(CardRow(f"{name}.alpha_{a:g}", name, f"{what}: steps to loss < {EPS_SOLVE:g} from alpha = {a:g}",
                                NO_PRED, f"diverged: non-finite iterates by step {b}", "-", "failed"))
        else:
            meas = float(h) if np.isfinite(h) else f"not solved in {steps} steps (final loss {fin:.3g})"
            rows.append(CardRow(f"{name}.alpha_{a:g}", name, f"{what}: steps to loss < {EPS_SOLVE:g} from alpha = {a:g}",
                                NO_PRED, meas, "-", "measured"))
    if normalized:
        big = (np.array(alphas) >= 10) & np.isfinite(hits)
        pred = _slope_pred(sub)
        q = "d steps / d ln alpha^2 (alpha >= 10: weight decay shrinks the large factor)"
        if big.sum() >= 2:
            la = np.log(np.array(alphas)[big] ** 2)
            slope = float(np.polyfit(la, hits[big], 1)[0])
            rows.append(_compare("nmf.slope", name, q, pred, slope, 2.0 / (np.ptp(la) * abs(slope)) if slope else None,
                                 "predicted: the registry's t_eq slope (the same (1 - eta lambda)^(2t) decay)"))
        else:
            rows.append(_compare("nmf.slope", name, q, pred, f"not measurable: {int(big.sum())} alpha >= 10 solved", None))
    return rows


def _state_rows(sub):
    params = {"kernel": jnp.zeros((128, 128), jnp.float32), "bias": jnp.zeros((128,), jnp.float32)}
    n = sum(int(np.prod(v.shape)) for v in params.values())
    shapes = jax.eval_shape(sub.make("state").init, params)
    nbytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in jax.tree.leaves(shapes)
                 if hasattr(s, "shape"))
    return [CardRow("state.bytes_per_param", "state", "optimizer state bytes per parameter (float32 params)",
                    NO_PRED, round(nbytes / n, 4), "-", "measured",
                    f"{nbytes} bytes for {n} parameters (kernel 128x128 + bias 128), from jax.eval_shape(tx.init)")]


TOYS = ("vector", "neuron", "ex2", "nmf", "state")


def card(sub: Subject, quick: bool = True, seed: int = 0, only=None, bar=None) -> Dict[str, Any]:
    """Every toy of the card for ``sub``: {"meta", "rows", "figs"} (figs: arrays for :func:`write_card`)."""
    m = _mode(quick)
    toys = [t for t in TOYS if only is None or t in only]
    rows: List[CardRow] = []
    figs: Dict[str, Any] = {}
    seconds = {}
    for toy in toys:
        if bar is not None:
            bar.item(f"{sub.label}: {toy}")
        t0 = time.time()
        try:
            with jax.enable_x64(toy != "state"):
                if toy == "vector":
                    rows += _vector_toy(sub, m, seed, figs)
                elif toy == "neuron":
                    rows += _neuron_toy(sub, m, seed, figs)
                elif toy in ("ex2", "nmf"):
                    rows += _mf_toy(sub, m, seed, figs, normalized=toy == "nmf")
                else:
                    rows += _state_rows(sub)
        except Exception as e:   # noqa: BLE001 - a failing toy is a failed row, never a crash
            msg = " ".join(str(e).split())[:240]
            rows.append(CardRow(f"{toy}.failed", toy, f"toy {toy!r}", NO_PRED,
                                f"failed: {type(e).__name__ if not isinstance(e, ToyFailed) else 'toy'}: {msg}",
                                "-", "failed"))
        seconds[toy] = round(time.time() - t0, 1)
        if bar is not None:
            bar.update(1)
    meta = {"optimizer": sub.label, "registry_name": sub.registry_name, "summary": sub.summary,
            "eta": sub.eta, "weight_decay": sub.weight_decay, "quick": quick, "seed": seed,
            "settings": {k: v for k, v in m.items()}, "toy_seconds": seconds,
            "seconds": round(sum(seconds.values()), 1), "jax": jax.__version__, "optax": optax.__version__}
    return {"meta": meta, "rows": rows, "figs": figs}


# ---------------------------------------------------------------------------------------- output
def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "optimizer"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(res) -> str:
    m = res["meta"]
    hp = (f"eta = {m['eta']:g}, lambda = {m['weight_decay']:g}" if m["eta"] is not None
          else "the factory's own hyper-parameters")
    out = [f"# Optimizer card: `{m['optimizer']}`", "", m["summary"], "",
           f"{'quick' if m['quick'] else 'full'} mode, seed {m['seed']}, {hp}; {m['seconds']} s "
           f"(per toy: {', '.join(f'{k} {v} s' for k, v in m['toy_seconds'].items())}).", "",
           "| id | quantity | predicted | measured | tolerance | status | note |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        cells = [r.id, r.quantity, _fmt(r.predicted), _fmt(r.measured), r.tolerance, r.status, r.note]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def _finite(a):
    a = np.asarray(a, float)
    return np.where(np.isfinite(a) & (np.abs(a) < 1e100), a, np.nan)


def _figure(res, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = res["figs"]
    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    ax = ax.ravel()
    v = f.get("vector")
    if v is not None:
        t = np.arange(v["sq"].shape[1])
        for i, c in enumerate(v["scales"]):
            ax[0].plot(t, _finite(v["sq"][i]), lw=0.8, label=f"||x(0)|| = {c:g}")
        ax[0].plot(t, _finite(v["sq"][-1]), "k", lw=0.6, label=f"{LOSS_SCALE:g} L, ||x(0)|| = 1")
        p = v.get("pred", {})
        if p.get("sq_norm") is not None:
            ax[0].axhline(float(p["sq_norm"]), color="C3", ls="--", label="registry prediction")
        ax[0].set_yscale("log"); ax[0].set_title("||x_t||^2, constant-sigma toy (d=64)", fontsize=9)
        ax[1].plot(t, _finite(v["ang"])[list(v["scales"]).index(1.0)], lw=0.4, label="measured (||x(0)|| = 1)")
        if p.get("angle") is not None:
            ax[1].axhline(float(p["angle"]), color="C3", ls="--", label="registry prediction")
        ax[1].set_yscale("log"); ax[1].set_title("angular update per step (rad)", fontsize=9)
        if "t_eq" in v:
            c2 = np.array(v["scales"]) ** 2
            ax[2].plot(np.log(c2), _finite(v["t_eq"]), "o-", label="measured t_eq")
            ps, te = v.get("pred_slope"), _finite(v["t_eq"])
            if ps is not None and np.isfinite(te[-1]):
                lc = np.log(c2)
                ax[2].plot(lc[lc > 0], te[-1] + ps * (lc[lc > 0] - lc[-1]), "--", color="C3",
                           label=f"registry slope {ps:.4g} (through the largest init)")
            ax[2].set_xlabel("ln ||x(0)||^2"); ax[2].set_title("time to equilibrium", fontsize=9)
    n = f.get("neuron")
    if n is not None:
        ax[3].plot(_finite(n["sq"]), lw=0.5)
        if n["pred"].get("sq_norm") is not None:
            ax[3].axhline(float(n["pred"]["sq_norm"]), color="C3", ls="--", label="registry prediction")
        ax[3].set_yscale("log"); ax[3].set_title(f"||x_i||^2 per neuron ({ROWS} x d={ROW_DIM})", fontsize=9)
    for k, a, title in (("ex2", ax[4], "Ex 2 unbalanced MF: loss"), ("nmf", ax[5], "normalized MF: full loss")):
        d = f.get(k)
        if d is None:
            continue
        for i, al in enumerate(d["alphas"]):
            y = np.where(np.isfinite(d["L"][i]), d["L"][i], np.nan)
            a.plot(np.clip(y, 1e-16, 1e6), lw=0.8, label=f"alpha = {al:g}")
        a.axhline(EPS_SOLVE, color="gray", ls=":")
        a.set_yscale("log"); a.set_title(title, fontsize=9)
    for a in ax:
        a.set_xlabel(a.get_xlabel() or "step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    m = res["meta"]
    fig.suptitle(f"optimizer card: {m['optimizer']}" + (f" (eta={m['eta']:g}, lambda={m['weight_decay']:g})"
                                                          if m["eta"] is not None else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_card(res, out_dir) -> Dict[str, Path]:
    """``OUT/<slug>.json``, ``.md``, ``.png``; returns the paths."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = slug(res["meta"]["optimizer"])
    paths = {"json": out / f"{s}.json", "md": out / f"{s}.md", "png": out / f"{s}.png"}
    doc = {"meta": res["meta"], "rows": [dataclasses.asdict(r) for r in res["rows"]]}
    paths["json"].write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    paths["md"].write_text(to_markdown(res) + f"\n![card]({s}.png)\n")
    _figure(res, paths["png"])
    return paths


def write_index(results, out_dir) -> Path:
    """``OUT/index.md`` (and ``index.json``, the card order for the docs site): one line per card (optimizer, eta, lambda, rows passing / failing / measured / failed)."""
    out = Path(out_dir)
    lines = ["# Optimizer cards", "",
             "| optimizer | eta | lambda | pass | fail | measured (no prediction) | failed toys | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        m, rows = res["meta"], res["rows"]
        c = {st: sum(r.status == st for r in rows) for st in STATUSES}
        name = slug(m["optimizer"])
        lines.append(f"| [{m['optimizer']}]({name}.md) | {_fmt(m['eta'])} | {_fmt(m['weight_decay'])} | {c['pass']} | "
                     f"{c['fail']} | {c['measured']} | {c['failed']} | {m['seconds']} |")
    path = out / "index.md"
    path.write_text("\n".join(lines) + "\n")
    import json

    (out / "index.json").write_text(json.dumps({"cards": [slug(r["meta"]["optimizer"]) for r in results]}, indent=1) + "\n")
    return path
