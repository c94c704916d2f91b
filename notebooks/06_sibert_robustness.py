# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — SIBERT: scale invariance, robustness to the init scale, clipping, vs BERT + AdamW
#
# Talk, *"Robustness of SIBERT to Scalings"* and *"Performance of SIBERT"*; paper Fig. 1-3.
#
# * SIBERT's MLM loss is **0-homogeneous in the encoder parameters** (ReLU-normalised attention,
#   PreNorm, ReLU, non-affine LayerNorm); BERT's is not.
# * Hence on SIBERT $\langle x, \nabla L\rangle = 0$: **without WD the encoder norm can only grow**
#   ($\|x - \eta g\|^2 = \|x\|^2 + \eta^2\|g\|^2$), and a large init keeps a tiny effective LR
#   $\eta/\|x\|^2$ for ever. **With WD** a large norm decays like $\prod_t(1-\eta_t\lambda)$ until the
#   gradient noise balances it, so runs from init scales x0.1 / x1 / x10 end with similar effective LRs.
#
# Data: with `NOTEBOOK_QUICK=1` (CI) this notebook trains tiny models itself for a few dozen steps
# on the sample corpus shipped with the tests (`sibert.train.train`, the function behind
# `scaleinv train`, writing the same `metrics.jsonl` / `summary.json` files). Without it, it reads
# the mini-preset runs on real Wikipedia text in `docs/results/sibert/`, produced by
# `python -m sibert.experiment experiments/main.toml experiments/robustness.toml` (SIBERT encoder:
# SGD + WD (lr 0.1, weight_decay 3e-2) + relative global clipping, C = 2; BERT: AdamW), as far as
# they have finished.

# %%
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from scaleinv.homogeneity import estimate_degree
from sibert.config import apply_overrides, preset
from sibert.data import load_mlm_data
from sibert.model import ENCODER, MLMModel, ModelConfig, init_params, mlm_loss
from sibert.train import sgd_schedule, train
from toyproblems.experiments import notebook_env

QUICK, FIG_DIR, save = notebook_env()
REPO = Path.cwd().resolve().parent  # the notebook runs in notebooks/
print("quick mode:", QUICK)

SCALES = (0.1, 1.0, 10.0)
SAMPLE = REPO / "tests" / "sibert" / "data" / "sample"
QUICK_DIMS = dict(source=str(SAMPLE), vocab_size=300, hidden=32, layers=2, heads=2, ffn=64, max_positions=32,
                  seq_len=32, batch_size=8, eval_every=25, eval_batches=2, ckpt_every=1000,
                  heldout_fraction=0.25, progress=False, steps=50)

# %% [markdown]
# ## 1. Homogeneity check: SIBERT vs BERT
#
# $L(c\,x_{enc}, x_{head})$ for $c \in [10^{-2}, 10^{2}]$ at a random init and a real batch
# (`scaleinv.homogeneity.estimate_degree`, float32 tolerance $10^{-4}$).

# %%
tmp = Path(tempfile.mkdtemp(prefix="nb06_"))
base_cfg = apply_overrides(preset("tiny", "sibert"), dict(QUICK_DIMS, cache_dir=str(tmp / "cache")))
data = load_mlm_data(base_cfg.source, base_cfg.vocab_size, base_cfg.seq_len, base_cfg.heldout_fraction,
                     base_cfg.mask_prob, base_cfg.cache_dir)
batch = {k: jnp.asarray(v) for k, v in data.train_batch(0, 8, 0).items()}
homog = {}
for name in ("sibert", "bert"):
    cfg = apply_overrides(preset("tiny", name), dict(QUICK_DIMS, cache_dir=str(tmp / "cache")))
    mcfg = ModelConfig.from_train(cfg)
    model = MLMModel(mcfg)
    params = init_params(mcfg, jax.random.PRNGKey(0), cfg.seq_len)
    mask = {k: jax.tree.map(lambda _: k == ENCODER, v) for k, v in params.items()}
    r = estimate_degree(lambda p: mlm_loss(model, p, batch)[0], params, mask=mask,
                        scales=np.logspace(-2, 2, 9), rtol=1e-4)
    homog[name] = r
    print(f"{name:6s}: fitted degree {r.degree:+.4f}, max relative change of the loss {r.residual:.1e}, "
          f"0-homogeneous: {r.homogeneous and r.rounded == 0}")

# %% [markdown]
# ## 2. The runs

# %%
def read_run(metrics_path: Path, summary_path: Path, eval_path: Path):
    m = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    s = json.loads(summary_path.read_text())
    ev = [json.loads(line) for line in eval_path.read_text().splitlines() if line.strip()]
    cols = {k: np.array([r[k] for r in m]) for k in ("step", "loss", "x_norm", "lr", "lr_eff")}
    cols["clipped"] = np.array([r.get("clipped", False) for r in m], bool)
    # fraction of clipped steps over ALL steps (the result files keep every 50th metrics line)
    cols["clip_rate"] = s.get("clip_rate_this_session", float(cols["clipped"].mean()))
    cols["eval_step"] = np.array([0] + [r["step"] for r in ev])
    cols["heldout"] = np.array([np.nan] + [r["heldout_loss"] for r in ev])
    return cols, s


runs = {}
if QUICK:
    plan = {f"wd_init{s:g}": ("sibert", "sgd-wd-rgc", {"init_scale": s, "weight_decay": 5e-2}) for s in SCALES}
    plan.update({f"nowd_init{s:g}": ("sibert", "sgd", {"init_scale": s}) for s in SCALES})
    plan["noclip_init1"] = ("sibert", "sgd-wd", {"weight_decay": 5e-2})
    plan["bert_adamw"] = ("bert", "adamw", {})
    for name, (model_name, opt, over) in plan.items():
        cfg = apply_overrides(preset("tiny", model_name, opt), dict(QUICK_DIMS, cache_dir=str(tmp / "cache"), **over))
        train(cfg, tmp / name, data=data, log=lambda s: None)
        runs[name] = read_run(tmp / name / "metrics.jsonl", tmp / name / "summary.json", tmp / name / "eval.jsonl")
    runs["sibert_sgd"] = runs["wd_init1"]
else:
    # the mini-preset experiments (experiments/main.toml, experiments/robustness.toml), as far as
    # they have run: `python -m sibert.experiment experiments/main.toml experiments/robustness.toml`
    res = REPO / "docs" / "results" / "sibert"

    def record(exp, name):
        paths = [res / exp / f"{name}.{x}" for x in ("metrics.jsonl", "summary.json", "eval.jsonl")]
        return read_run(*paths) if all(p.is_file() for p in paths) else None

    for s in (0.1, 1.0, 10.0, 100.0):
        for tag in ("wd", "nowd"):
            r = record("robustness", f"{tag}_s0_c{s:g}")
            if r is not None:
                runs[f"{tag}_init{s:g}"] = r
    for key, name in (("sibert_sgd", "sibert_sgdwdrgc"), ("bert_adamw", "bert_adamw")):
        r = record("main", name)
        if r is not None:
            runs[key] = r
    if "sibert_sgd" not in runs or "bert_adamw" not in runs:
        raise FileNotFoundError(f"missing the main SIBERT / BERT results in {res / 'main'}: run `python -m "
                                "sibert.experiment experiments/main.toml` (or set NOTEBOOK_QUICK=1 to train small models here)")
    SCALES = tuple(s for s in (0.1, 1.0, 10.0, 100.0) if f"wd_init{s:g}" in runs and f"nowd_init{s:g}" in runs)
    if "wd_init1" not in runs:
        runs["wd_init1"] = runs["sibert_sgd"]
    print("init scales with finished seed-0 robustness runs (WD and no WD):", SCALES or "none yet")

for key, (c, s) in runs.items():
    ev = s["final_eval"] or {}
    print(f"{key:12s} {s['model']:6s} {s['optimizer']:10s} init x{s['init_scale']:<4g} steps {s['steps_done']:5d} "
          f"final train loss {c['loss'][-1]:.3f} held-out {ev.get('heldout_loss', float('nan')):.3f} "
          f"||x_enc|| {c['x_norm'][0]:.2f} -> {c['x_norm'][-1]:.2f} clip rate {c['clip_rate']:.3f}")

# %% [markdown]
# ## 3. Loss and encoder norm for init scales x0.1 / x1 / x10, with and without WD
#
# Dotted: the pure-WD decay $\|x_0\|\prod_{s<t}(1-\eta_s\lambda)$ of the x10 run (the gradient
# term $\eta^2\|g\|^2 \propto \eta^2/\|x\|^2$ is negligible at a large norm). From a tiny init the
# norm grows, but relative clipping caps that growth at $(1-\eta\lambda)^2 + 2C\eta\lambda$ per step
# (it fires on most early steps of the x0.1 run). Both directions take
# $\sim\ln(100)/(2\eta\lambda)$ steps to cover a factor 10 in norm: the short quick-mode runs only
# show the beginning.

# %%
def wd_decay(summary, steps):
    cfg = summary["config"]
    eta = np.asarray(sgd_schedule(cfg["lr"], cfg["steps"], tuple(float(x) for x in cfg["lr_drops"].split(",")))(
        jnp.arange(int(steps.max()) + 1)))
    cum = np.concatenate([[1.0], np.cumprod(1 - eta * cfg["weight_decay"])])
    return cum[steps]


BIG = max((s for s in SCALES if s > 1), default=None)   # the largest init scale with WD results
if BIG is not None:
    c10, s10 = runs[f"wd_init{BIG:g}"]
    pred10 = c10["x_norm"][0] * wd_decay(s10, c10["step"])
    far = c10["x_norm"] > 3 * runs["wd_init1"][0]["x_norm"].max()   # still far above the x1 run's norm
    decay_err = float(np.max(np.abs(c10["x_norm"][far] / pred10[far] - 1))) if far.any() else float("nan")
    print(f"x{BIG:g} + WD: max |measured/pure-WD decay - 1| over {far.sum()} logged steps = {decay_err:.4f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
for i, s in enumerate(SCALES):
    for tag, ls in (("wd", "-"), ("nowd", "--")):
        c, _ = runs[f"{tag}_init{s:g}"]
        lab = f"x{s:g} init, " + ("SGD+WD+clip" if tag == "wd" else "SGD, no WD")
        ax1.plot(c["eval_step"], c["heldout"], ls, marker=".", color=f"C{i}", lw=1, label=lab)
        ax2.plot(c["step"], c["x_norm"], ls, color=f"C{i}", lw=1, label=lab)
if BIG is not None:
    ax2.plot(c10["step"], pred10, "k:", lw=1.2, label="theory: ||x0|| prod(1 - eta_t lambda)")
RUNS_NOTE = " (quick: 50 steps, sample corpus)" if QUICK else " (mini preset, Wikipedia text)"
ax1.axhline(runs["wd_init1"][1]["unigram_baseline"]["train_unigram_xent"], color="gray", ls=":", label="unigram baseline")
ax1.set_xlabel("step"); ax1.set_ylabel("held-out MLM loss (nats)"); ax1.set_title("SIBERT: loss vs init scale" + RUNS_NOTE, fontsize=10)
ax2.set_yscale("log"); ax2.set_xlabel("step"); ax2.set_ylabel("encoder parameter norm ||x||")
ax2.set_title("SIBERT: encoder norm vs init scale")
ax1.legend(fontsize=7)
ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # outside: never covers a curve
save(fig, "06_sibert_init_scales")
plt.show()

# %% [markdown]
# ## 4. SIBERT + SGD (+ clipping) vs BERT + AdamW

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.2))
for key, lab in (("sibert_sgd", "SIBERT, SGD + WD + relative clipping"), ("noclip_init1", "SIBERT, SGD + WD (no clipping)"),
                 ("bert_adamw", "BERT, AdamW")):
    if key in runs:
        c, s = runs[key]
        ax.plot(c["step"], c["loss"], lw=0.6, alpha=0.5)
        ax.plot(c["eval_step"], c["heldout"], "o-", ms=3, color=ax.lines[-1].get_color(), lw=1.2,
                label=(f"{lab}: clip rate {c['clip_rate']:.1%}" if key == "sibert_sgd" else lab) + " (held-out)")
ub = runs["bert_adamw"][1]["unigram_baseline"]["train_unigram_xent"]
ax.axhline(ub, color="gray", ls=":", label="unigram baseline (held-out cross-entropy)")
ax.set_xlabel("step"); ax.set_ylabel("MLM loss (nats): train (thin), held-out (dots)")
ax.set_title("SIBERT + SGD vs BERT + AdamW" + RUNS_NOTE, fontsize=10)
ax.legend(fontsize=7)
save(fig, "06_sibert_vs_bert")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert homog["sibert"].homogeneous and homog["sibert"].rounded == 0, homog["sibert"]   # 0-homogeneous encoder
assert not homog["bert"].homogeneous and homog["bert"].residual > 1e-2, homog["bert"]  # BERT is not
for s in SCALES:  # no WD: <x, grad L> = 0 => the norm never decreases (float32 rounding 1e-5)
    xn = runs[f"nowd_init{s:g}"][0]["x_norm"]
    assert np.min(xn[1:] / xn[:-1]) >= 1 - 1e-5, (s, np.min(xn[1:] / xn[:-1]))
if BIG is not None:
    assert far.sum() >= 3 and decay_err < 0.02, (far.sum(), decay_err)                   # WD decay of a large norm
# relative clipping caps the norm growth: ||x_t+1||^2/||x_t||^2 <= (1 - eta_t lambda)^2 + 2 C eta_t lambda per step
c01, s01 = runs["wd_init0.1"] if "wd_init0.1" in runs else runs["sibert_sgd"]
cfg01 = s01["config"]
eta01 = np.asarray(sgd_schedule(cfg01["lr"], cfg01["steps"], tuple(float(x) for x in cfg01["lr_drops"].split(",")))(
    jnp.arange(int(c01["step"].max()) + 1)))
lam, C = cfg01["weight_decay"], cfg01["clip_C"]
log_bound = np.concatenate([[0.0], np.cumsum(np.log((1 - eta01 * lam) ** 2 + 2 * C * eta01 * lam))])
growth = 2 * np.diff(np.log(c01["x_norm"])) - np.diff(log_bound[c01["step"]])
print(f"x0.1 + WD + clipping: max log(norm^2 growth / clip bound) between logged steps = {growth.max():.2e}")
assert growth.max() <= 1e-5, growth.max()
# Reported, not asserted: WD pulls the norms (hence the effective LR eta/||x||^2) of all init scales towards
# one equilibrium, but covering a factor 10 in norm takes ~ln(100)/(2 eta lambda) steps, about the length of
# the tiny-preset robustness runs (800 steps, LR /10 after 480), so the paper's Fig. 1 claim is not testable here.
spread = {tag: max(runs[f"{tag}_init{s:g}"][0]["x_norm"][-1] for s in SCALES)
          / min(runs[f"{tag}_init{s:g}"][0]["x_norm"][-1] for s in SCALES) if SCALES else float("nan")
          for tag in ("wd", "nowd")}
t0_steps = np.log(100) / (2 * cfg01["lr"] * lam)
print(f"final encoder-norm spread max/min over init scales: WD {spread['wd']:.2f}, no WD {spread['nowd']:.2f} "
      f"({int(c01['step'].max()) + 1} steps; equalisation needs ~ln(100)/(2 eta lambda) = {t0_steps:.0f})")
for tag in ("wd", "nowd"):
    print(f"final held-out MLM loss, {tag:4s}, init " + " / ".join(f"x{s:g}" for s in SCALES) + ": "
          + " / ".join(f"{(runs[f'{tag}_init{s:g}'][1]['final_eval'] or {}).get('heldout_loss', float('nan')):.3f}"
                       for s in SCALES) + f"  (unigram baseline {ub:.3f})")
if not QUICK:  # real-text mini-preset runs: both recipes learn beyond the context-free baseline
    for key in ("sibert_sgd", "bert_adamw"):
        assert runs[key][1]["final_eval"]["heldout_loss"] < ub, (key, runs[key][1]["final_eval"])
if not QUICK:  # the paper's criterion over both seeds (docs/results/sibert/robustness/spread.md):
    # spread over c of the seed-mean held-out loss vs the largest seed-to-seed spread, recomputed
    # here from the committed run records and compared with the committed summary
    from sibert.experiment_figures import spread_summary

    spread_now = json.loads(json.dumps(spread_summary(json.loads((res / "robustness" / "table.json").read_text()))))
    for name, g in spread_now.items():
        print(f"{name:6s} {g['model']} {g['optimizer']:10s} loss per c (seeds): {g['loss']}; spread of seed means "
              f"over c {g['spread_of_means']}, largest seed spread {g['max_seed_spread']}, ratio {g['ratio']}")
    assert spread_now == json.loads((res / "robustness" / "spread.json").read_text())
print("all checks passed")
