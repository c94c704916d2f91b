"""Figures of the SIBERT experiments (:mod:`sibert.experiment`), drawn from the recorded runs.

Each function takes ``(experiment, table rows, results dir)`` and writes PNGs into the results
dir; an experiment file lists the ones it wants (``figures = ["robustness", ...]``).

Theory drawn next to the measurements (Li et al. 2022 Thm 4.5 / talk "Ingredient 2";
Kosson et al. 2024), for SGD + WD with LR eta_t and WD lambda on a scale-invariant encoder:

* equilibrium norm  ||x||^2 -> sqrt(eta/(lambda (2 - eta lambda))) sigma   with sigma = ||g|| ||x||,
  the gradient norm on the unit sphere, MEASURED per step (the theory takes it as given);
* equilibration time from init scale c: the exact norm recursion
  ||x_{t+1}||^2 = (1 - eta lambda)^2 ||x_t||^2 + eta^2 sigma^2 / ||x_t||^2 from c^2 ||x_0||^2 until
  within a factor 2 of equilibrium (:func:`scaleinv.theory.steps_to_equilibrium`), ~ ln(c^2)/(2 eta lambda)
  for large c;
* angular update per step at equilibrium  sqrt(2 eta lambda)  (AdamW: sqrt(2 eta lambda (1-b1)/(1+b1))).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

__all__ = ["robustness", "main_comparison", "warmup", "predicted_equilibration_steps", "sigma_estimate",
           "spread_summary", "spread_md", "warmup_md"]

_COLORS = {0.1: "tab:blue", 1.0: "tab:green", 10.0: "tab:orange", 100.0: "tab:red"}
_STYLES = ["-", "--", ":", "-."]


def _jsonl(path: Path) -> List[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def _color(c: float):
    return _COLORS.get(float(c), None)


def sigma_estimate(metrics: List[dict], lo: int = 100, hi: Optional[int] = None) -> float:
    """Median of sigma_t = ||g_t|| ||x_t|| (gradient norm on the unit sphere) over steps [lo, hi)."""
    xs = [r["grad_norm"] * r["x_norm"] for r in metrics if r["step"] >= lo and (hi is None or r["step"] < hi)]
    return float(np.median(xs)) if xs else float("nan")


def predicted_equilibration_steps(x0_sq_norm: float, eta: float, wd: float, sigma: float) -> int:
    """Steps of the exact SGD+WD norm recursion from ||x_0||^2 until within 2x of equilibrium."""
    from scaleinv import theory

    return int(theory.steps_to_equilibrium(x0_sq_norm, eta, wd, sigma, band=2.0))



def _wd_at(r: dict, steps) -> np.ndarray:
    """The encoder weight decay lambda_t of run row ``r`` at ``steps`` (``wd_drops``: /10 at
    round(f * total steps), as :func:`sibert.train.wd_schedule`)."""
    from sibert.train import wd_schedule

    total = int(r.get("total_steps") or r["steps"])
    drops = tuple(float(x) for x in str(r.get("wd_drops") or "").split(",") if x.strip())
    sched = wd_schedule(r["weight_decay"], total, drops)
    steps = np.asarray(steps)
    return np.full(steps.shape, float(sched)) if not callable(sched) else np.array([float(sched(t)) for t in steps])


def _equilibration_marks(rows, data) -> Dict[float, int]:
    """Predicted equilibration step per init scale (SGD + WD groups, first seed): the exact norm
    recursion from the run's initial ||x||^2 with sigma measured on the group's c = 1 run."""
    marks: Dict[float, int] = {}
    for r in rows:
        if r["optimizer"] not in ("sgd-wd-rgc", "sgd-wd") or r["seed"] != min(x["seed"] for x in rows):
            continue
        m = data[r["run"]][0]
        ref = next((x for x in rows if x["group"] == r["group"] and x["init_scale"] == 1.0), r)
        sig = sigma_estimate(data[ref["run"]][0])
        if m and np.isfinite(sig):
            marks[r["init_scale"]] = predicted_equilibration_steps(m[0]["x_norm"] ** 2, r["lr"], r["weight_decay"], sig)
    return marks


def _recipe(r: dict) -> str:
    """The panel a run goes in: its group without a seed / init-scale suffix (``bert_adamw_seed1``,
    ``sibert_hotcool_c100`` -> ``bert_adamw``, ``sibert_hotcool``)."""
    import re

    return re.sub(r"(_seed\d+|_c[0-9.]+)+$", "", r["group"])


def _robustness_panels(plt, rows, data, marks, out: Path):
    """robustness_loss.png as small multiples: one column per recipe (held-out loss on top, the
    training loss below), init scales coloured, seed 0 solid / later seeds dashed; dotted
    verticals: the predicted equilibration step of each scale (SGD + WD recipes); triangles: the
    measured plateau-escape step of each run (:func:`sibert.escape.escape_step`)."""
    from sibert.escape import escape_step

    recipes: List[str] = []
    for r in rows:
        if _recipe(r) not in recipes:
            recipes.append(_recipe(r))
    ncol = len(recipes)
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol + 0.5, 6.6), squeeze=False, sharex=True, sharey="row")
    ub = rows[0]["unigram_xent"]
    seed0 = min(r["seed"] for r in rows)
    lows = [e["heldout_loss"] for r in rows for e in data[r["run"]][1]] + [
        x["loss"] for r in rows for x in data[r["run"]][0]]
    bottom = min([ub - 0.6] + [v for v in lows if np.isfinite(v)]) - 0.1
    for j, rec in enumerate(recipes):
        top, bot = axes[0][j], axes[1][j]
        mine = [r for r in rows if _recipe(r) == rec]
        for r in mine:
            m, ev = data[r["run"]]
            kw = dict(color=_color(r["init_scale"]), ls="-" if r["seed"] == seed0 else "--", lw=1.1)
            lab = f"c={r['init_scale']:g} s{r['seed']}"
            if ev:
                top.plot([e["step"] for e in ev], [e["heldout_loss"] for e in ev], label=lab, **kw)
                t = escape_step(ev, ub)
                if t is not None:
                    y = next(e["heldout_loss"] for e in ev if e["step"] == t)
                    top.plot([t], [y], marker="v", ms=7, color=kw["color"], mec="k", mew=0.6, ls="none")
            if m:
                w = min(5, len(m))
                y = np.convolve([x["loss"] for x in m], np.ones(w) / w, mode="valid")
                bot.plot([x["step"] for x in m][w - 1:], y, **kw)
        if any(r["optimizer"] in ("sgd-wd-rgc", "sgd-wd") for r in mine):
            for c, t in sorted(marks.items()):
                if any(r["init_scale"] == c for r in mine):
                    for ax in (top, bot):
                        ax.axvline(t, color=_color(c), ls=":", lw=1)
        r0 = mine[0]
        top.set_title(f"{rec}\n{r0['model']} + {r0['optimizer']}", fontsize=8)
        top.legend(fontsize=6, loc="upper right")
        for ax in (top, bot):
            ax.axhline(ub, color="k", lw=0.8, ls="--")
            ax.axhline(ub - 0.5, color="0.5", lw=0.6, ls="-.")
            ax.set_ylim(bottom, ub + 1.0)
        bot.set_xlabel("step")
    axes[0][0].set_ylabel("held-out MLM loss")
    axes[1][0].set_ylabel("training loss (5-record mean)")
    import textwrap

    note = ("dashed black: unigram cross-entropy; dash-dot: escape line (0.5 nat below); triangles: measured "
            "escape step; dotted verticals: predicted equilibration step per init scale (exact norm recursion, "
            "sigma measured at c = 1); solid: seed 0, dashed: later seeds")
    fig.suptitle(textwrap.fill(note, width=int(17 * (4.2 * ncol + 0.5))), fontsize=7)
    _save(fig, out / "robustness_loss.png")

def _group_styles(rows):
    groups = []
    for r in rows:
        if r["group"] not in groups:
            groups.append(r["group"])
    return {g: _STYLES[i % len(_STYLES)] for i, g in enumerate(groups)}


def spread_summary(rows: List[dict]) -> Dict[str, dict]:
    """The init-scale robustness criterion per recipe, from FINISHED runs only.

    A recipe is (model, optimizer, lr, weight_decay, warmup_frac, steps), named after the first
    group that has it (seeds may come from several groups). Per recipe: ``loss[c][seed]`` (final held-out loss), ``spread_over_c`` per seed (max - min over
    the scales that seed finished; seeds with one scale only are left out), ``seed_spread[c]`` (max - min over the seeds finished at c),
    ``spread_of_means`` (max - min over c of the seed-mean loss, scales with >= 2 seeds only) and
    ``ratio`` = spread_of_means / the largest seed spread, and ``holds``: ratio <= 1 (the paper's "spread across c no
    larger than seed to seed"; None until some scale has two seeds). ``complete``: every scale
    of the group has the same seeds.
    """
    out: Dict[str, dict] = {}
    for r in rows:
        if r.get("status") != "ok" or not np.isfinite(r.get("heldout_loss", np.nan)):
            continue
        recipe = (r["model"], r["optimizer"], r["lr"], r["weight_decay"], r["warmup_frac"], r["steps"])
        name = next((k for k, v in out.items() if v["recipe"] == recipe), r["group"])
        g = out.setdefault(name, {"model": r["model"], "optimizer": r["optimizer"], "recipe": recipe, "loss": {}})
        g["loss"].setdefault(f"{r['init_scale']:g}", {})[str(r["seed"])] = round(float(r["heldout_loss"]), 4)
    for g in out.values():
        loss = g["loss"] = dict(sorted(g["loss"].items(), key=lambda kv: float(kv[0])))
        seeds = sorted({s for v in loss.values() for s in v})
        g["spread_over_c"] = {s: round(max(v[s] for v in loss.values() if s in v) -
                                       min(v[s] for v in loss.values() if s in v), 4)
                              for s in seeds if sum(s in v for v in loss.values()) >= 2}
        g["seed_spread"] = {c: round(max(v.values()) - min(v.values()), 4) for c, v in loss.items() if len(v) >= 2}
        means = {c: float(np.mean(list(v.values()))) for c, v in loss.items() if len(v) >= 2}
        g["spread_of_means"] = round(max(means.values()) - min(means.values()), 4) if len(means) >= 2 else None
        g["max_seed_spread"] = max(g["seed_spread"].values()) if g["seed_spread"] else None
        known = g["spread_of_means"] is not None and g["max_seed_spread"]
        g["ratio"] = round(g["spread_of_means"] / g["max_seed_spread"], 2) if known else None
        g["holds"] = None if g["ratio"] is None else bool(g["spread_of_means"] <= g["max_seed_spread"])
        g["complete"] = len({tuple(sorted(v)) for v in loss.values()}) == 1
    return out


def spread_md(summary: Dict[str, dict]) -> str:
    """Markdown table of :func:`spread_summary`: one row per group, finished runs only."""
    scales = sorted({float(c) for g in summary.values() for c in g["loss"]})
    head = ["group", "encoder optimizer"] + [f"c = {c:g} (seeds)" for c in scales] + [
        "spread over c, per seed", "seed spread, max over c", "spread of seed means over c", "ratio", "holds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, g in summary.items():
        cells = [name, f"{g['model']} {g['optimizer']}"]
        for c in scales:
            v = g["loss"].get(f"{c:g}", {})
            cells.append(" / ".join(f"{v[s]:.3f}" for s in sorted(v)) if v else "not finished")
        cells.append(" / ".join(f"{x:.3f}" for x in g["spread_over_c"].values()))
        cells.append("-" if g["max_seed_spread"] is None else f"{g['max_seed_spread']:.3f}")
        cells.append("-" if g["spread_of_means"] is None else f"{g['spread_of_means']:.3f}")
        cells.append("-" if g["ratio"] is None else f"{g['ratio']:.2f}")
        cells.append("-" if g["holds"] is None else ("yes" if g["holds"] else "no"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def robustness(exp, rows, out: Path):
    """robustness_loss.png (held-out and training loss vs step per init scale, predicted
    equilibration times marked), robustness_norm.png (||x||^2 vs its predicted equilibrium
    band; angular update vs sqrt(2 eta lambda)) and spread.json / spread.md
    (:func:`spread_summary`)."""
    summary = spread_summary(rows)
    (out / "spread.json").write_text(json.dumps(summary, indent=1))
    (out / "spread.md").write_text(spread_md(summary))
    plt = _plt()
    styles = _group_styles(rows)
    data = {r["run"]: (_jsonl(out / f"{r['run']}.metrics.jsonl"), _jsonl(out / f"{r['run']}.eval.jsonl"))
            for r in rows}
    marks = _equilibration_marks(rows, data)
    _robustness_panels(plt, rows, data, marks, out)
    (out / "equilibration_steps.json").write_text(json.dumps({f"{c:g}": t for c, t in sorted(marks.items())}))

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for r in rows:
        m = data[r["run"]][0]
        if not m:
            continue
        kw = dict(color=_color(r["init_scale"]), ls=styles[r["group"]], lw=1.0)
        steps = np.array([x["step"] for x in m])
        axes[0].plot(steps, [x["x_norm"] ** 2 for x in m], label=f"{r['group']} c={r['init_scale']:g} s{r['seed']}", **kw)
        axes[1].plot(steps, [x["angular_update"] for x in m], **kw)
        if r["optimizer"] in ("sgd-wd-rgc", "sgd-wd") and r["seed"] == min(x["seed"] for x in rows):
            lr = np.array([x["lr"] for x in m])
            sig = np.array([x["grad_norm"] * x["x_norm"] for x in m])
            lam = _wd_at(r, steps)
            pred = np.sqrt(lr / (lam * (2 - lr * lam))) * sig
            axes[0].plot(steps, pred, color=_color(r["init_scale"]), lw=0.6, alpha=0.5)
            axes[1].plot(steps, np.sqrt(2 * lr * lam), color="k", lw=1.0, ls="--")
    axes[0].set_yscale("log")
    axes[0].set_title("encoder ||x||^2 (thin: predicted equilibrium sqrt(eta/(lambda(2-eta lambda))) sigma_t)")
    axes[1].set_yscale("log")
    axes[1].set_title("encoder angular update per step (dashed: sqrt(2 eta_t lambda))")
    for ax in axes:
        ax.set_xlabel("step")
        ax.title.set_fontsize(8)
    axes[0].legend(fontsize=6, ncol=2)
    _save(fig, out / "robustness_norm.png")


def main_comparison(exp, rows, out: Path):
    """main.png: held-out loss vs step, and the training loss (records every ``record_every``
    steps, 5-record moving average) with the steps where relative clipping fired marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for r in rows:
        ev = _jsonl(out / f"{r['run']}.eval.jsonl")
        m = _jsonl(out / f"{r['run']}.metrics.jsonl")
        if not ev:
            continue
        line, = axes[0].plot([e["step"] for e in ev], [e["heldout_loss"] for e in ev], marker=".",
                             label=f"{r['run']} ({r['heldout_loss']:.3f})")
        if m:
            w = min(5, len(m))
            y = np.convolve([x["loss"] for x in m], np.ones(w) / w, mode="valid")
            axes[1].plot([x["step"] for x in m][w - 1:], y, color=line.get_color(), lw=1)
            clip = [x["step"] for x in m if x.get("clipped")]
            if clip:
                axes[1].plot(clip, [axes[1].get_ylim()[0]] * len(clip), "|", color=line.get_color(), ms=6)
    ub = rows[0]["unigram_xent"]
    for ax, yl in zip(axes, ("held-out MLM loss", "training loss (moving average; ticks: clipped steps)")):
        ax.axhline(ub, color="k", lw=0.8, ls="--")
        ax.set_xlabel("step")
        ax.set_ylabel(yl)
    axes[0].legend(fontsize=7)
    _save(fig, out / "main.png")


def warmup(exp, rows, out: Path):
    """warmup_lr.png (final held-out loss vs LR per optimizer, with / without warmup; finished runs
    solid markers, in-progress runs hollow), warmup_gap.json (best FINISHED loss without warmup minus
    best with, per optimizer, with the LRs it covers) and warmup_angles.png (per-matrix angular
    update vs step of each optimizer's best finished run with and without warmup, against the
    predicted equilibrium angle at the scheduled LR), and warmup_gap.md (:func:`warmup_md`; the
    JSON also says whether a best LR is the smallest or largest LR run: ``best_at_edge``)."""
    plt = _plt()
    by: Dict[tuple, list] = {}
    for r in rows:
        if r["heldout_loss"] is None:
            continue
        by.setdefault((r["optimizer"], bool(r["warmup_frac"])), []).append(
            (r["lr"], r["heldout_loss"], r["status"] == "ok", r["run"]))
    fig, ax = plt.subplots(figsize=(7, 4.6))
    opts = sorted({k[0] for k in by})
    for (opt, warm), pts in sorted(by.items()):
        pts.sort()
        color = f"C{opts.index(opt)}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, ls="-" if warm else "--",
                label=f"{opt} {'warmup' if warm else 'no warmup'}")
        for lr, loss, done, _ in pts:
            ax.plot([lr], [loss], marker="o" if warm else "x", color=color, ms=6,
                    mfc=color if done else "none")
    gap = {}
    for opt in opts:
        fin = {w: [p for p in by.get((opt, w), []) if p[2]] for w in (False, True)}
        if fin[False] and fin[True]:
            best = {w: min(fin[w], key=lambda p: p[1]) for w in (False, True)}
            lrs = sorted({p[0] for w in (False, True) for p in fin[w]})
            gap[opt] = {"gap": best[False][1] - best[True][1],
                        "best_no_warmup": {"lr": best[False][0], "loss": best[False][1]},
                        "best_warmup": {"lr": best[True][0], "loss": best[True][1]},
                        "lrs_no_warmup": sorted(p[0] for p in fin[False]),
                        "lrs_warmup": sorted(p[0] for p in fin[True]),
                        # a best LR at the edge of the LRs run: the optimum may lie beyond
                        "best_at_edge": sorted({best[w][0] for w in (False, True)
                                                if len(lrs) > 1 and best[w][0] in (lrs[0], lrs[-1])})}
    (out / "warmup_gap.md").write_text(warmup_md(by, gap))
    ax.set_xscale("log")
    ax.set_xlabel("encoder LR")
    ax.set_ylabel("final held-out MLM loss (hollow: run in progress)")
    ax.axhline(rows[0]["unigram_xent"], color="k", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    _save(fig, out / "warmup_lr.png")
    (out / "warmup_gap.json").write_text(json.dumps(gap, indent=1))
    _warmup_angles(plt, by, rows, out)


def warmup_md(by: Dict[tuple, list], gap: Dict[str, dict]) -> str:
    """Markdown: the final held-out loss without / with warmup per (encoder optimizer, LR), finished
    runs only ('…': not finished), then per optimizer the best of each and the warmup gap."""
    lines = ["| encoder optimizer | encoder LR | no warmup | 10 % warmup | no warmup - warmup |", "|---|---|---|---|---|"]
    for opt in sorted({k[0] for k in by}):
        for lr in sorted({p[0] for w in (False, True) for p in by.get((opt, w), [])}):
            v = [next((p[1] for p in by.get((opt, w), []) if p[0] == lr and p[2]), None) for w in (False, True)]
            d = f"{v[0] - v[1]:+.3f}" if None not in v else "-"
            lines.append(f"| {opt} | {lr:g} | " + " | ".join("…" if x is None else f"{x:.3f}" for x in v) + f" | {d} |")
    lines += ["", "| encoder optimizer | best no warmup (lr) | best with warmup (lr) | warmup gap | best LR at the edge of the sweep |",
              "|---|---|---|---|---|"]
    for opt, g in sorted(gap.items()):
        edge = ", ".join(f"{x:g}" for x in g.get("best_at_edge", [])) or "no"
        lines.append(f"| {opt} | {g['best_no_warmup']['loss']:.3f} ({g['best_no_warmup']['lr']:g}) | "
                     f"{g['best_warmup']['loss']:.3f} ({g['best_warmup']['lr']:g}) | **{g['gap']:+.3f}** | {edge} |")
    return "\n".join(lines) + "\n"


def _warmup_angles(plt, by, rows, out: Path):
    """One panel per (optimizer, warmup): the per-matrix angles of its best finished run."""
    from sibert.config import TrainConfig
    from sibert.train import predicted_equilibrium_angle

    row_of = {r["run"]: r for r in rows}
    panels = []
    for key, pts in sorted(by.items()):
        fin = [p for p in pts if p[2]]
        if fin:
            panels.append((key, row_of[min(fin, key=lambda p: p[1])[3]]))
    if not panels:
        return
    ncol = 2
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(10, 3.2 * nrow), squeeze=False, sharey=True)
    for ax, ((opt, warm), r) in zip(axes.flat, panels):
        met = _jsonl(out / f"{r['run']}.metrics.jsonl")
        cfg = TrainConfig(**json.loads((out / f"{r['run']}.summary.json").read_text())["config"])
        steps = [m["step"] for m in met]
        for k in sorted({k for m in met for k in m if k.startswith("angle/")}):
            ax.plot(steps, [m.get(k, np.nan) for m in met], lw=0.6, alpha=0.6)
        ax.plot(steps, [predicted_equilibrium_angle(cfg, m["lr"]) for m in met], "k--", lw=1.4,
                label="predicted equilibrium angle at the scheduled LR")
        ax.set_yscale("log")
        ax.set_title(f"{opt}, {'warmup' if warm else 'no warmup'}, lr {r['lr']:g}: "
                     f"held-out {r['heldout_loss']:.3f}", fontsize=8)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("angle per step (rad), per matrix")
    if nrow > 1:
        axes[1, 0].set_ylabel("angle per step (rad), per matrix")
    _save(fig, out / "warmup_angles.png")
