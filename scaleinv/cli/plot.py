"""``scaleinv plot RUN_DIR [RUN_DIR ...]``: training curves of one or more runs to a PNG.

Four panels over steps: training loss (thin) and held-out MLM loss (markers), encoder parameter
norm ||x||, clip rate (fraction of clipped steps in a sliding window) and the encoder angular
update per step, with the rotational-equilibrium prediction beside it (dashed; Kosson et al.
2024 via :func:`scaleinv.theory.equilibrium_angle`: sqrt(2 eta_t lambda) for SGD+WD,
sqrt(2 eta_t lambda (1-beta1)/(1+beta1)) for AdamW, with the run's per-step LR eta_t).
Reads ``metrics.jsonl`` / ``eval.jsonl`` / ``config.json`` written by :mod:`sibert.train`.
Several run directories are overlaid (e.g. the init-scale robustness runs).
"""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p):
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    p.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/curves.png of the first run)")
    p.add_argument("--window", type=int, default=50, help="sliding window (steps) for the clip rate")
    p.add_argument("--labels", default=None, help="comma-separated legend labels, one per run")


def _read_jsonl(path: Path):
    """Rows of a JSON-lines log; a torn LAST line (a run killed mid-write) is skipped."""
    if not path.is_file():
        return []
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    rows = []
    for i, l in enumerate(lines):
        try:
            rows.append(json.loads(l))
        except ValueError:
            if i < len(lines) - 1:
                raise ValueError(f"line {i + 1} is not JSON") from None
    return rows


# the fields every row of each log must have (what the panels plot); the others are optional
REQUIRED = {"metrics.jsonl": ("step", "loss"), "eval.jsonl": ("step", "heldout_loss")}


def _check_rows(path: Path, rows, error) -> None:
    """``error`` (UsageError) naming the first row that is not an object with numeric REQUIRED fields."""
    need = REQUIRED[path.name]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise error(f"runs: {path} line {i + 1} is not a JSON object; allowed: rows of scaleinv train")
        missing = [k for k in need if k not in row]
        if missing:
            raise error(f"runs: {path} line {i + 1} has no {', '.join(repr(k) for k in missing)}; allowed: rows "
                        f"with {', '.join(need)} (written by scaleinv train)")
        bad = [k for k in need if isinstance(row[k], bool) or not isinstance(row[k], (int, float))]
        if bad:
            raise error(f"runs: {path} line {i + 1}: {bad[0]} is {row[bad[0]]!r}; allowed: a number")


def _col(rows, key):
    """The column ``key`` (NaN where a row lacks it: an optional diagnostic)."""
    return [float(r.get(key, float("nan"))) if isinstance(r.get(key), (int, float)) else float("nan") for r in rows]


def _smooth(xs, w):
    import numpy as np
    xs = np.asarray(xs, float)
    if len(xs) == 0:
        return xs
    w = max(1, min(w, len(xs)))
    c = np.cumsum(np.insert(xs, 0, 0.0))
    out = np.empty_like(xs)
    for i in range(len(xs)):
        lo = max(0, i - w + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def predicted_angle(config: dict, lrs):
    """Equilibrium angular update per step for the run's encoder optimizer (None if no WD)."""
    from scaleinv import theory

    opt, wd = config.get("optimizer"), float(config.get("weight_decay", 0.0))
    if wd <= 0 or opt not in ("sgd-wd", "sgd-wd-rgc", "adamw"):
        return None
    if opt == "adamw":
        return [float(theory.equilibrium_angle("adamw", lr, wd, beta1=float(config["adam_b1"]))) for lr in lrs]
    return [float(theory.equilibrium_angle("sgd", lr, wd)) for lr in lrs]


def run(args) -> int:
    from scaleinv.usage import UsageError, check_output_file

    runs = [Path(r) for r in args.runs]
    missing = [str(r) for r in runs if not (r / "metrics.jsonl").is_file()]
    if missing:
        raise UsageError(f"runs: no metrics.jsonl in {', '.join(missing)} (give run directories of scaleinv train)")
    labels = args.labels.split(",") if args.labels else [r.name for r in runs]
    if len(labels) != len(runs):
        raise UsageError(f"--labels: {len(labels)} names for {len(runs)} runs; allowed: one name per run")
    if args.window < 1:
        raise UsageError(f"--window: must be an integer >= 1, got {args.window}")
    out = Path(args.out) if args.out else runs[0] / "curves.png"
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--out: unknown image type {out.suffix!r}; allowed: .png, .pdf, .svg")
    check_output_file(out, "--out")
    for r in runs:
        for name in ("metrics.jsonl", "eval.jsonl"):
            try:
                rows = _read_jsonl(r / name)
            except ValueError as e:
                raise UsageError(f"runs: {r / name} is not JSON lines ({e})") from None
            _check_rows(r / name, rows, UsageError)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    for run_dir, label in zip(runs, labels):
        m = _read_jsonl(run_dir / "metrics.jsonl")
        ev = _read_jsonl(run_dir / "eval.jsonl")
        steps = [r["step"] for r in m]
        line, = ax[0, 0].plot(steps, _smooth([r["loss"] for r in m], 10), lw=0.8, label=f"{label} (train)")
        if ev:
            ax[0, 0].plot([r["step"] for r in ev], [r["heldout_loss"] for r in ev], "o-", ms=3,
                          color=line.get_color(), label=f"{label} (held-out)")
        ax[0, 1].plot(steps, _col(m, "x_norm"), lw=1, color=line.get_color(), label=label)
        if m and all("clipped" in r for r in m):
            ax[1, 0].plot(steps, _smooth([float(r["clipped"]) for r in m], args.window), lw=1,
                          color=line.get_color(), label=label)
        ax[1, 1].plot(steps, _smooth(_col(m, "angular_update"), 10), lw=0.8,
                      color=line.get_color(), label=label)
        cfg_path = run_dir / "config.json"
        try:
            pred = predicted_angle(json.loads(cfg_path.read_text()), [r["lr"] for r in m]) \
                if cfg_path.is_file() and m and all("lr" in r for r in m) else None
        except (ValueError, TypeError, KeyError, AttributeError):   # no usable config.json: no prediction
            pred = None
        if pred:
            ax[1, 1].plot(steps, pred, "--", lw=1, color=line.get_color(), label=f"{label} equilibrium (theory)")
    ax[0, 0].set(title="MLM loss (nats)", xlabel="step")
    ax[0, 1].set(title="encoder parameter norm ||x||", xlabel="step", yscale="log")
    ax[1, 0].set(title=f"clip rate (window {args.window} steps)", xlabel="step")
    ax[1, 1].set(title="encoder angular update per step (rad)", xlabel="step", yscale="log")
    for a in ax.ravel():
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(str(out))
    return 0
