"""Experiments as config files: every SIBERT / BERT run and figure of ``docs/results/sibert/``.

An experiment is a TOML file under ``experiments/`` (see ``experiments/README.md``)::

    name = "robustness"                  # results go to RESULTS/robustness/
    preset = "mini"                      # sibert.config preset of every run
    [set]                                # overrides for every run (any TrainConfig field)
    steps = 3000
    [[group]]                            # one group of runs = one line style in the figures
    name = "wd"                          # run names: wd_c0.1_s0, wd_c1_s0, ...
    model = "sibert"
    optimizer = "sgd-wd-rgc"
    set = { weight_decay = 5e-2 }
    grid = { init_scale = [0.1, 1, 10, 100], seed = [0, 1] }   # cartesian product
    priority = 0                         # lower runs first (default 0)

The runs of all given files are executed one after another (one process, the 2-core CPU is
the bottleneck) in the order (priority, seed, file, group, grid), so every experiment gets its
seed-0 runs before any second seed. Each run trains with :func:`sibert.train.train` into
``RUNS/<experiment>/<run>/`` and checkpoints every ``ckpt_every`` steps, so the driver is
**resumable**: rerun the same command after an interruption (also after a reboot) and finished
runs are skipped, an interrupted run continues from its last checkpoint, and a run without a
checkpoint starts again.

After every run the driver refreshes ``RESULTS/<experiment>/``: per run ``<run>.summary.json``,
``<run>.eval.jsonl`` and ``<run>.metrics.jsonl`` (decimated to every ``record_every`` steps),
``table.json`` + ``table.md``, and the experiment's figures (:mod:`sibert.experiment_figures`).

    python -m sibert.experiment experiments/main.toml experiments/robustness.toml
    python -m sibert.experiment experiments/*.toml --report-only     # tables + figures only
    python -m sibert.experiment experiments/robustness.toml --only 'wd_*' --set steps=20  # smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import itertools
import json
import re
import shutil
import statistics
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from sibert.config import ConfigError, apply_overrides, parse_set_args, preset, validate

__all__ = ["Run", "Experiment", "load_experiment", "plan", "run_experiments", "record_run",
           "summarize", "main"]

# the keys an experiment file and its groups may have (anything else is a typo: refused)
TOP_KEYS = ("name", "title", "preset", "set", "group", "record_every", "figures")
GROUP_KEYS = ("name", "model", "optimizer", "set", "grid", "priority")
# experiment, group and run names become folder / file names under --runs and --results
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,+=-]*")

# short names of grid keys in run names (anything else: the field name itself)
_SHORT = {"init_scale": "c", "seed": "s", "lr": "lr", "warmup_frac": "warm", "steps": "T",
          "weight_decay": "wd"}


@dataclasses.dataclass(frozen=True)
class Run:
    experiment: str
    name: str
    group: str
    model: str
    optimizer: str
    overrides: Dict[str, Any]
    order: tuple

    def config(self, preset_name: str, extra: Optional[Dict[str, Any]] = None):
        cfg = apply_overrides(preset(preset_name, self.model, self.optimizer), self.overrides)
        return validate(apply_overrides(cfg, extra or {}))


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    preset: str
    title: str
    runs: List[Run]
    record_every: int
    figures: List[str]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_experiment(path, file_index: int = 0) -> Experiment:
    """Parse one experiment TOML file (ConfigError naming the bad key on a bad file)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"experiment file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"experiment file {str(path)!r} cannot be read ({getattr(e, 'strerror', None) or e}); "
                          f"allowed: a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"experiment file {str(path)!r} is not valid TOML: {e}") from None
    for key in ("name", "preset", "group"):
        if key not in data:
            raise ConfigError(f"{path}: missing key {key!r}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(TOP_KEYS)}")
    _check_name(path, "name", data["name"])
    if not isinstance(data["group"], list) or not data["group"]:
        raise ConfigError(f"{path}: group: no [[group]] table; allowed: one or more [[group]] tables")
    if not isinstance(data.get("set", {}), dict):
        raise ConfigError(f"{path}: set: must be a table of config overrides")
    base = dict(data.get("set", {}))
    runs = []
    for gi, g in enumerate(data["group"]):
        if not isinstance(g, dict):
            raise ConfigError(f"{path}: group {gi}: must be a table")
        for key in ("name", "model", "optimizer"):
            if key not in g:
                raise ConfigError(f"{path}: group {gi}: missing key {key!r}")
        unknown = sorted(set(g) - set(GROUP_KEYS))
        if unknown:
            raise ConfigError(f"{path}: group {gi}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(GROUP_KEYS)}")
        _check_name(path, f"group {gi}: name", g["name"])
        grid = g.get("grid", {})
        if not isinstance(grid, dict) or not grid and "grid" in g:
            raise ConfigError(f"{path}: group {gi}: grid: empty or not a table; allowed: a table of non-empty "
                              f"lists, e.g. grid = {{ seed = [0, 1] }} (or no grid: one run)")
        empty = [k for k, v in grid.items() if not isinstance(v, list) or not v]
        if empty:
            raise ConfigError(f"{path}: group {gi}: grid: {empty[0]} = {grid[empty[0]]!r} gives no runs; "
                              f"allowed: a non-empty list of values")
        keys = list(grid)
        for ci, combo in enumerate(itertools.product(*(grid[k] for k in keys)) if keys else [()]):
            over = {**base, **g.get("set", {}), **dict(zip(keys, combo))}
            suffix = "".join(f"_{_SHORT.get(k, k)}{_fmt(v)}" for k, v in zip(keys, combo))
            seed = int(over.get("seed", 0))
            runs.append(Run(data["name"], g["name"] + suffix, g["name"], g["model"], g["optimizer"], over,
                            (int(g.get("priority", 0)), seed, file_index, gi, ci)))
    names = [r.name for r in runs]
    for n in names:
        _check_name(path, "run name", n)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: duplicate run names {dup}")
    exp = Experiment(data["name"], path, data["preset"], data.get("title", data["name"]), runs,
                     int(data.get("record_every", 25)), list(data.get("figures", [])))
    for r in runs:  # validate every run up front: a typo fails before hours of training
        r.config(exp.preset)
    return exp


def _check_name(path, field: str, name) -> None:
    """Experiment / group / run names are folder names: a safe character set, no path parts."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{path}: {field}: {name!r} is not a safe name; allowed: letters, digits and . _ , + = - "
                          f"(starting with a letter or digit, no '..', no '/'): it names folders under --runs "
                          f"and --results")


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` resolved, ConfigError unless it stays inside ``root`` (path traversal)."""
    root = Path(root).resolve()
    p = root.joinpath(*parts).resolve()
    if p != root and root not in p.parents:
        raise ConfigError(f"{'/'.join(parts)!r} resolves outside {str(root)!r}; allowed: names inside it")
    return p


def plan(experiments: List[Experiment], only: Optional[str] = None) -> List[Run]:
    """The runs to train, in order. ``only``: comma-separated globs over run names; the runs
    matching the first glob come first, then those of the second, ... (a priority list)."""
    runs = [r for e in experiments for r in e.runs]
    if only is None:
        return sorted(runs, key=lambda r: r.order)
    globs = [g.strip() for g in only.split(",") if g.strip()]

    def rank(r: Run) -> int:
        return next((i for i, g in enumerate(globs) if fnmatch.fnmatch(r.name, g)), -1)

    return sorted((r for r in runs if rank(r) >= 0), key=lambda r: (rank(r), r.order))


def _read_jsonl(path: Path) -> List[dict]:
    if not path.is_file():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def run_state(run_dir: Path, steps: int, record: Optional[Path] = None) -> str:
    """'done' (a finished run: its summary in the run dir, or its committed record ``record``,
    so a fresh checkout knows which runs are done), 'resume' (a checkpoint exists) or 'fresh'."""
    for s in (run_dir / "summary.json", record):
        if s is not None and s.is_file():
            summ = json.loads(s.read_text())
            if summ.get("status") == "nonfinite" or summ.get("steps_done") == steps:
                return "done"
    ck = run_dir / "checkpoints"
    if ck.is_dir() and any(p.name.isdigit() for p in ck.iterdir()):
        return "resume"
    return "fresh"


def find_identical(runs_root: Path, cfg, exclude: Path) -> Optional[Path]:
    """A finished run under ``runs_root/*/*`` whose config.json equals ``cfg`` (all fields but the
    progress switch), e.g. the init-scale-1 run shared by the main and robustness experiments.
    Training is deterministic on a given machine, so its records stand for this run too."""
    want = {k: v for k, v in cfg.to_dict().items() if k != "progress"}
    for cand in sorted(runs_root.glob("*/*/config.json")):
        rd = cand.parent
        if rd == exclude or not (rd / "summary.json").is_file() or run_state(rd, cfg.steps) != "done":
            continue
        got = {k: v for k, v in json.loads(cand.read_text()).items() if k != "progress"}
        if got == want:
            return rd
    return None


def _round(v):
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v


def record_run(run: Run, run_dir: Path, out: Path, every: int) -> dict:
    """Copy a finished run's small record into ``out`` and return its table row."""
    s = json.loads((run_dir / "summary.json").read_text())
    m = _read_jsonl(run_dir / "metrics.jsonl")
    (out / f"{run.name}.eval.jsonl").write_text((run_dir / "eval.jsonl").read_text())
    last = m[-1]["step"] if m else -1
    keep = [r for r in m if r["step"] % every == 0 or r["step"] == last]
    (out / f"{run.name}.metrics.jsonl").write_text(
        "".join(json.dumps({k: _round(v) for k, v in r.items()}) + "\n" for r in keep))
    clipped = [r["clipped"] for r in m if "clipped" in r]
    tps = [r["tokens_per_s"] for r in m[5:]] or [0.0]
    ev = s.get("final_eval") or {}
    ub = s["unigram_baseline"]
    hl = ev.get("heldout_loss")
    cfg = s["config"]
    row = {"run": run.name, "group": run.group, "model": s["model"], "optimizer": s["optimizer"],
            "init_scale": s["init_scale"], "seed": cfg["seed"], "lr": cfg["lr"],
            "weight_decay": cfg["weight_decay"], "warmup_frac": cfg.get("warmup_frac"),
            "wd_drops": cfg.get("wd_drops", ""), "total_steps": cfg["steps"], "steps": s["steps_done"], "status": s["status"],
            "heldout_loss": hl, "heldout_accuracy": ev.get("heldout_accuracy"),
            "below_unigram": None if hl is None else ub["train_unigram_xent"] - hl,
            "train_loss_last50": statistics.fmean(r["loss"] for r in m[-50:]) if m else None,
            "clip_rate": (sum(clipped) / len(clipped)) if clipped else None,
            "encoder_norm_init": m[0]["x_norm"] if m else None, "encoder_norm_final": s["encoder_x_norm"],
            "wall_s": s["wall_s"], "device": s.get("device_kind"), "median_tokens_per_s": statistics.median(tps),
            "unigram_xent": ub["train_unigram_xent"], "unigram_entropy": ub["heldout_entropy"]}
    small = dict(s, run=run.name, group=run.group, experiment=run.experiment, row=row)
    (out / f"{run.name}.summary.json").write_text(json.dumps(small, indent=1))
    return row


def in_progress_row(run: Run, run_dir: Path, out: Path, exp: Experiment) -> dict:
    """Row (status 'in progress') of a run that has not finished: its held-out curve so far is
    copied to ``<run>.eval.jsonl`` so the figures show it; no summary record is written, so the
    run is still trained (resumed) by the next call."""
    ev = _read_jsonl(run_dir / "eval.jsonl")
    m = _read_jsonl(run_dir / "metrics.jsonl")
    cfg = json.loads((run_dir / "config.json").read_text())
    (out / f"{run.name}.eval.jsonl").write_text((run_dir / "eval.jsonl").read_text())
    keep = [x for x in m if x["step"] % exp.record_every == 0]
    (out / f"{run.name}.metrics.jsonl").write_text(
        "".join(json.dumps({k: _round(v) for k, v in x.items()}) + "\n" for x in keep))
    from sibert.data import load_mlm_data  # the unigram baseline of the run's tokenizer (cached)

    data = load_mlm_data(cfg["source"], cfg["vocab_size"], cfg["seq_len"], cfg["heldout_fraction"],
                         cfg["mask_prob"], cfg["cache_dir"] or None, log=lambda s: None)
    ub = data.unigram_baseline()
    hl = ev[-1]["heldout_loss"]
    clipped = [x["clipped"] for x in m if "clipped" in x]
    return {"run": run.name, "group": run.group, "model": cfg["model"], "optimizer": cfg["optimizer"],
            "init_scale": cfg["init_scale"], "seed": cfg["seed"], "lr": cfg["lr"],
            "weight_decay": cfg["weight_decay"], "warmup_frac": cfg.get("warmup_frac"),
            "wd_drops": cfg.get("wd_drops", ""), "total_steps": cfg["steps"], "steps": ev[-1]["step"], "status": f"in progress, {ev[-1]['step']}/{cfg['steps']} steps",
            "heldout_loss": hl, "heldout_accuracy": ev[-1]["heldout_accuracy"],
            "below_unigram": ub["train_unigram_xent"] - hl,
            "train_loss_last50": statistics.fmean(x["loss"] for x in m[-50:]) if m else None,
            "clip_rate": (sum(clipped) / len(clipped)) if clipped else None,
            "encoder_norm_init": m[0]["x_norm"] if m else None, "encoder_norm_final": m[-1]["x_norm"] if m else None,
            "wall_s": float("nan"), "median_tokens_per_s": statistics.median([x["tokens_per_s"] for x in m[5:]] or [0.0]),
            "unigram_xent": ub["train_unigram_xent"], "unigram_entropy": ub["heldout_entropy"]}


def _cell(v, fmt):
    return "-" if v is None else format(v, fmt)


def table_md(exp: Experiment, rows: List[dict]) -> str:
    if not rows:
        return f"# {exp.title}\n\nNo finished run yet.\n"
    ub = rows[0]
    lines = [f"# {exp.title}", "",
             f"Preset `{exp.preset}`, config `{exp.path.as_posix()}`. Held-out unigram baselines of the same "
             f"tokenizer: cross-entropy under the train unigram {ub['unigram_xent']:.3f} nats, "
             f"held-out entropy {ub['unigram_entropy']:.3f} nats.", "",
             "| run | model | encoder optimizer | init scale | seed | lr | wd | warmup | steps | held-out loss | "
             "below unigram (nat) | held-out acc | clip rate | encoder norm init -> final | wall (s) | tokens/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        clip = "-" if r["clip_rate"] is None else f"{100 * r['clip_rate']:.2f}%"
        status = "" if r["status"] == "ok" else f" ({r['status']})"
        lines.append(
            f"| {r['run']}{status} | {r['model']} | {r['optimizer']} | {r['init_scale']:g} | {r['seed']} | "
            f"{r['lr']:g} | {r['weight_decay']:g} | {_cell(r['warmup_frac'], 'g')} | {r['steps']} | "
            f"{_cell(r['heldout_loss'], '.3f')} | {_cell(r['below_unigram'], '.3f')} | "
            f"{_cell(r['heldout_accuracy'], '.3f')} | {clip} | {_cell(r['encoder_norm_init'], '.1f')} -> "
            f"{_cell(r['encoder_norm_final'], '.1f')} | {r['wall_s']:.0f} | {r['median_tokens_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def summarize(exp: Experiment, runs_root: Path, results_root: Path, figures: bool = True) -> List[dict]:
    """(Re)write RESULTS/<exp>/ : the record of every run finished in ``runs_root`` (copied
    there), then the table and figures from all records (also those committed by an earlier
    session whose run directories are gone)."""
    out = inside(results_root, exp.name)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in exp.runs:
        rd = runs_root / exp.name / r.name
        rec = out / f"{r.name}.summary.json"
        if (rd / "summary.json").is_file():
            rows.append(record_run(r, rd, out, exp.record_every))
        elif rec.is_file():
            rows.append(json.loads(rec.read_text())["row"])
        elif (rd / "eval.jsonl").is_file() and _read_jsonl(rd / "eval.jsonl"):
            rows.append(in_progress_row(r, rd, out, exp))
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text(table_md(exp, rows))
    if figures and rows:
        from sibert import experiment_figures

        for fig in exp.figures:
            getattr(experiment_figures, fig)(exp, rows, out)
    return rows


def run_experiments(experiments: List[Experiment], runs_root: Path, results_root: Path,
                    only: Optional[str] = None, extra: Optional[Dict[str, Any]] = None,
                    log: Callable[[str], None] = print, train_fn=None, max_runs: Optional[int] = None,
                    shard: Optional[tuple] = None, report: bool = True) -> int:
    """Train every planned run that is not done (resuming interrupted ones), refreshing the
    results after each (``report=False``: not; for drivers running in parallel). ``shard=(k, n)``
    keeps the planned runs whose index modulo n is k. Returns the number of runs trained."""
    from sibert.train import train

    train_fn = train_fn or train
    by_name = {e.name: e for e in experiments}
    todo = plan(experiments, only)
    if shard is not None:
        todo = todo[shard[0]::shard[1]]
    trained = 0
    for i, r in enumerate(todo):
        exp = by_name[r.experiment]
        cfg = r.config(exp.preset, extra)
        rd = inside(runs_root, exp.name, r.name)
        state = run_state(rd, cfg.steps, results_root / exp.name / f"{r.name}.summary.json")
        if state == "done":
            continue
        if max_runs is not None and trained >= max_runs:
            break
        if state == "fresh" and rd.exists():
            shutil.rmtree(rd)
        same = find_identical(runs_root, cfg, rd) if state == "fresh" else None
        if same is not None:
            log(f"=== {exp.name}/{r.name}: identical to the finished run {same}, copied")
            shutil.copytree(same, rd, ignore=shutil.ignore_patterns("checkpoints"))
            if report:
                summarize(exp, runs_root, results_root)
            continue
        log(f"=== [{i + 1}/{len(todo)}] {exp.name}/{r.name} ({state}) {time.strftime('%H:%M:%S')}")
        train_fn(cfg, rd, resume=(state == "resume"), log=log)
        trained += 1
        if report:
            summarize(exp, runs_root, results_root)
    return trained


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sibert.experiment", description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", help="experiment TOML files (experiments/*.toml)")
    p.add_argument("--runs", default="runs/experiments", help="run directories root")
    p.add_argument("--results", default="docs/results/sibert", help="results root (committed)")
    p.add_argument("--only", default=None, help="globs over run names, comma-separated, in priority order, e.g. 'wd_s0_*,nowd_s0_c1'")
    p.add_argument("--set", action="append", default=[], help="extra key=value for every run (smoke tests)")
    p.add_argument("--report-only", action="store_true", help="only rewrite tables and figures")
    p.add_argument("--max-runs", type=int, default=None, help="stop after training this many runs")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="train only the planned runs whose index modulo N is K (drivers in parallel)")
    p.add_argument("--no-report", action="store_true",
                   help="train only; write records, tables and figures later with --report-only")
    args = p.parse_args(argv)
    try:
        shard = None
        if args.shard is not None:
            try:
                k, n = (int(v) for v in args.shard.split("/"))
            except ValueError:
                k, n = -1, 0
            if not 0 <= k < n:
                raise ConfigError(f"--shard: must be K/N with integers 0 <= K < N, got {args.shard!r}")
            shard = (k, n)
        exps = [load_experiment(c, i) for i, c in enumerate(args.configs)]
        extra = parse_set_args(args.set)
        for r in plan(exps, args.only):
            r.config(next(e.preset for e in exps if e.name == r.experiment), extra)
    except ConfigError as e:
        print(f"python -m sibert.experiment: error: {e}", file=sys.stderr)
        return 2
    runs_root, results_root = Path(args.runs).resolve(), Path(args.results)
    if not args.report_only:
        run_experiments(exps, runs_root, results_root, args.only, extra, max_runs=args.max_runs,
                        shard=shard, report=not args.no_report)
        if args.no_report:
            return 0
    for e in exps:
        summarize(e, runs_root, results_root)
        print((results_root / e.name / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
