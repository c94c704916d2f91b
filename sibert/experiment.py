"""The tiny-preset experiments of issue 8, run one after another (2-core CPU friendly):

1. SIBERT + SGD + WD + relative global clipping vs BERT + AdamW, equal steps: held-out MLM loss
   against the unigram baselines of the held-out set.
2. Robustness to the initialisation scale (paper Fig. 1/2): SIBERT with every encoder parameter
   multiplied by 0.1, 1, 10, trained with SGD + WD + clipping (wd 5e-2, eta lambda = 5e-3, so the
   norm can equilibrate within the short run) and with plain SGD (no WD; relative clipping needs
   lambda > 0, so none).

    python -m sibert.experiment --runs runs/sibert_exp --results docs/results/sibert \\
        [--main-steps 2000] [--robust-steps 800] [--only main|robust]

Per run it copies a small record to ``--results``: ``<name>.summary.json``, ``<name>.eval.jsonl``
and ``<name>.metrics.jsonl`` decimated to every ``--every`` steps; and writes ``table.json`` +
``table.md`` (the README table) and two PNGs. A run directory that already has a summary.json
is reused (so the script can be re-run after an interruption).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path


def _runs(main_steps: int, robust_steps: int, only: str):
    out = []
    if only in ("all", "main"):
        out += [("main_sibert_sgdwdrgc", "sibert", "sgd-wd-rgc", {"steps": main_steps}),
                ("main_bert_adamw", "bert", "adamw", {"steps": main_steps})]
    if only in ("all", "robust"):
        # WD runs at eta*lambda = 5e-3 (wd 5e-2): the norm has to move by 10x within the short run,
        # which takes ~ln(100) / (2 eta lambda) ~ 460 steps (at eta*lambda = 1e-3 it would be 2300)
        for opt, tag, extra in (("sgd-wd-rgc", "wd", {"weight_decay": 5e-2}), ("sgd", "nowd", {})):
            for s in (0.1, 1.0, 10.0):
                out.append((f"robust_{tag}_init{s:g}", "sibert", opt,
                            {"steps": robust_steps, "init_scale": s, **extra}))
    return out


def _record(name: str, run: Path, results: Path, every: int) -> dict:
    s = json.loads((run / "summary.json").read_text())
    m = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    (results / f"{name}.eval.jsonl").write_text((run / "eval.jsonl").read_text())
    keep = [r for r in m if r["step"] % every == 0 or r["step"] == len(m) - 1]
    (results / f"{name}.metrics.jsonl").write_text("".join(json.dumps(
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}) + "\n" for r in keep))
    clipped = [r["clipped"] for r in m if "clipped" in r]
    tps = [r["tokens_per_s"] for r in m[5:]] or [0.0]
    ev = s["final_eval"] or {}
    row = {"run": name, "model": s["model"], "optimizer": s["optimizer"], "init_scale": s["init_scale"],
           "steps": s["steps_done"], "status": s["status"],
           "heldout_loss": ev.get("heldout_loss"), "heldout_accuracy": ev.get("heldout_accuracy"),
           "train_loss_last50": statistics.fmean(r["loss"] for r in m[-50:]),
           "clip_rate": (sum(clipped) / len(clipped)) if clipped else None,
           "encoder_norm_init": m[0]["x_norm"], "encoder_norm_final": s["encoder_x_norm"],
           "wall_s": s["wall_s"], "median_tokens_per_s": statistics.median(tps),
           "unigram_baseline": s["unigram_baseline"]}
    small = {k: v for k, v in s.items() if k != "config"}
    small["config"] = s["config"]
    (results / f"{name}.summary.json").write_text(json.dumps(small, indent=1))
    return row


def _table_md(rows) -> str:
    ub = rows[0]["unigram_baseline"]
    lines = [f"Held-out unigram baselines: entropy H = {ub['heldout_entropy']:.3f} nats; cross-entropy "
             f"under the train unigram = {ub['train_unigram_xent']:.3f} nats.", "",
             "| run | model | encoder optimizer | init scale | steps | held-out MLM loss | held-out acc | "
             "clip rate | encoder norm init -> final | wall (s) | tokens/s (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        clip = "-" if r["clip_rate"] is None else f"{100 * r['clip_rate']:.1f}%"
        hl = "-" if r["heldout_loss"] is None else f"{r['heldout_loss']:.3f}"
        ha = "-" if r["heldout_accuracy"] is None else f"{r['heldout_accuracy']:.3f}"
        fin = "-" if r["encoder_norm_final"] is None else f"{r['encoder_norm_final']:.1f}"
        lines.append(f"| {r['run']} | {r['model']} | {r['optimizer']} | {r['init_scale']:g} | {r['steps']} | "
                     f"{hl} | {ha} | {clip} | {r['encoder_norm_init']:.1f} -> {fin} | "
                     f"{r['wall_s']:.0f} | {r['median_tokens_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/sibert_exp")
    p.add_argument("--results", default="docs/results/sibert")
    p.add_argument("--main-steps", type=int, default=1500)
    p.add_argument("--robust-steps", type=int, default=800)
    p.add_argument("--only", choices=("all", "main", "robust"), default="all")
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--set", action="append", default=[], help="extra key=value for every run")
    args = p.parse_args(argv)
    from scaleinv.cli import main as cli_main

    runs_root, results = Path(args.runs), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, model, opt, over in _runs(args.main_steps, args.robust_steps, args.only):
        run = runs_root / name
        if not (run / "summary.json").is_file():
            if run.exists():
                shutil.rmtree(run)
            sets = []
            for k, v in over.items():
                sets += ["--set", f"{k}={v}"]
            for kv in args.set:
                sets += ["--set", kv]
            print(f"=== {name}", flush=True)
            rc = cli_main(["train", "--model", model, "--optimizer", opt, "--preset", "tiny",
                           "--out", str(run), "--no-progress", *sets])
            if rc not in (0, 3):
                return rc
        rows.append(_record(name, run, results, args.every))
        print(json.dumps(rows[-1]), flush=True)
    old = json.loads((results / "table.json").read_text()) if (results / "table.json").is_file() else []
    merged = {r["run"]: r for r in old}
    merged.update({r["run"]: r for r in rows})
    rows = sorted(merged.values(), key=lambda r: r["run"])
    (results / "table.json").write_text(json.dumps(rows, indent=1))
    (results / "table.md").write_text(_table_md(rows))
    print(_table_md(rows))
    groups = {"main": [r for r in rows if r["run"].startswith("main_")],
              "robust": [r for r in rows if r["run"].startswith("robust_")]}
    for g, rs in groups.items():
        dirs = [str(runs_root / r["run"]) for r in rs if (runs_root / r["run"] / "metrics.jsonl").is_file()]
        if dirs:
            cli_main(["plot", *dirs, "--out", str(results / f"{g}.png"),
                      "--labels", ",".join(Path(d).name for d in dirs)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
