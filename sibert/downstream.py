"""The downstream suite: the paper's Table 1 at this scale (issue 29, item 3).

Tasks (:mod:`sibert.downstream_sets`, vendored, validated, split 80/20 by a hash of the text):
``trec6`` (TREC question type, 6 classes), ``sms_spam`` (ham / spam), ``amazon_sentiment``
(VADER Amazon review sentences, negative / positive). Each encoder is fine-tuned on each task with
:func:`sibert.finetune.finetune` -- the run's encoder, masked mean pooling, a dense head -- with the
paper's fine-tuning recipe: BERT encoder **Adam**, SIBERT encoder **LAMB**, the head **LAMB**
(10 % linear warmup then linear decay for all; no weight decay on the encoder). Default LRs
(fixed a priori, not tuned on the test split): BERT Adam 1e-4 (the largest of the fine-tuning grid
of small BERTs), SIBERT LAMB 2e-3 (LAMB's step is relative: ~2e-3 of each tensor's norm per step;
Adam's 1e-4 per coordinate on weights of std 0.02 is ~5e-3), head LAMB 1e-2.

Encoders: a pretrained run directory (its newest orbax checkpoint, :func:`sibert.runs.load_run`),
or a **random-init control** of an architecture (``--random-init sibert,bert``: the preset's
model, freshly initialised with the fine-tuning seed, same tokenizer as the preset's runs, from
the token cache). Every (encoder, task) is fine-tuned with each seed of ``--seeds`` (the seed
sets the head init and the batch order, and for a control also the encoder init); the test split
is the same for all seeds. Accuracy on the test split, mean and std (ddof 1) over the seeds.

    python -m sibert.downstream RUN_DIR [NAME=RUN_DIR ...] [--random-init sibert,bert] \\
        --tasks trec6,sms_spam,amazon_sentiment --seeds 0,1,2 --out docs/results/sibert/downstream/

writes ``OUT/table.json``: rows {task, recipe, pretrain_steps, seeds, accuracy_mean, accuracy_std}
(+ per-seed accuracies, majority baseline, pretraining loss, fine-tuning settings), merged with the
rows already there (same task, recipe and pretrain_steps: replaced), and ``OUT/table.md`` in the
shape of the paper's Table 1 (rows: recipes incl. the random-init controls; columns: pretraining
loss and the tasks). Bad input: one line ``error: <field>: ...``, exit 2, nothing written.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from sibert.downstream_sets import TASKS

__all__ = ["TASKS", "FINETUNE_RECIPE", "DownstreamError", "Encoder", "random_init_encoder", "run_encoder",
           "evaluate_encoder", "merge_rows", "table_md", "main"]

# the paper's fine-tuning recipe per architecture: (encoder optimizer, encoder LR)
FINETUNE_RECIPE = {"bert": ("adam", 1e-4), "sibert": ("lamb", 2e-3)}
HEAD_LR = 1e-2
ROW_KEYS = ("task", "recipe", "pretrain_steps", "seeds", "accuracy_mean", "accuracy_std")


class DownstreamError(ValueError):
    """Bad input; the message starts with the field."""


class Encoder:
    """A recipe to fine-tune: a name, how to build the :class:`sibert.runs.Run` for a seed, and
    what is known about its pretraining."""

    def __init__(self, recipe: str, model: str, pretrain_steps: int, pretrain_loss: Optional[float],
                 make_run, source: str):
        self.recipe, self.model, self.pretrain_steps = recipe, model, pretrain_steps
        self.pretrain_loss, self.make_run, self.source = pretrain_loss, make_run, source


def _pretrain_loss(run_dir: Path, step: int) -> Optional[float]:
    """Held-out MLM loss of the run at ``step`` (eval.jsonl, else summary.json's final_eval)."""
    ev = run_dir / "eval.jsonl"
    if ev.is_file():
        for line in ev.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("step") == step and r.get("heldout_loss") is not None:
                    return float(r["heldout_loss"])
    sp = run_dir / "summary.json"
    if sp.is_file():
        fe = json.loads(sp.read_text()).get("final_eval") or {}
        if fe.get("step") == step and fe.get("heldout_loss") is not None:
            return float(fe["heldout_loss"])
    return None


def run_encoder(spec: str) -> Encoder:
    """``RUN_DIR`` or ``NAME=RUN_DIR``: a pretrained run (loaded once, now, so bad input fails early)."""
    from sibert.runs import RunError, load_run

    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).name, spec
    try:
        run = load_run(path)
    except RunError as e:
        raise DownstreamError(str(e)) from None
    label = name or run.path.name
    return Encoder(label, run.config.model, run.step, _pretrain_loss(run.path, run.step), lambda seed: run,
                   str(run.path))


def random_init_encoder(model: str, preset_name: str = "mini", config=None, tokenizer=None) -> Encoder:
    """The random-init control of ``model``: ``preset_name``'s config (or ``config``), encoder
    initialised with the fine-tuning seed, tokenizer of the preset's token cache (or ``tokenizer``)."""
    from sibert.config import MODELS, ConfigError, preset

    if model not in MODELS:
        raise DownstreamError(f"--random-init: unknown model {model!r}; allowed: {', '.join(MODELS)}")
    try:
        cfg = config if config is not None else preset(preset_name, model)
    except ConfigError as e:
        raise DownstreamError(f"--preset: {e}") from None
    if tokenizer is None:
        from tokenizers import Tokenizer

        from sibert.data import load_mlm_data

        data = load_mlm_data(cfg.source, cfg.vocab_size, cfg.seq_len, cfg.heldout_fraction, cfg.mask_prob,
                             cfg.cache_dir or None)
        tokenizer = Tokenizer.from_file(data.tokenizer_path)

    def make_run(seed: int):
        import jax

        from sibert.model import ModelConfig, init_params
        from sibert.runs import Run

        mcfg = ModelConfig.from_train(cfg)
        params = init_params(mcfg, jax.random.PRNGKey(seed), cfg.seq_len, cfg.init_scale)
        return Run(path=Path("."), config=cfg, model_config=mcfg, params=params, step=0, tokenizer=tokenizer)

    return Encoder(f"{'SIBERT' if model == 'sibert' else 'BERT'}, random init (control)", model, 0, None,
                   make_run, f"random init, preset {preset_name if config is None else 'custom'}")


def evaluate_encoder(enc: Encoder, tasks: Sequence[str], seeds: Sequence[int], steps: int = 600,
                     batch_size: int = 32, seq_len: int = 64, max_train: Optional[int] = None,
                     encoder_lr: Optional[float] = None, head_lr: float = HEAD_LR, log=None) -> List[dict]:
    """Fine-tune ``enc`` on every task with every seed; one table row per task."""
    from sibert.downstream_sets import load_task
    from sibert.finetune import finetune

    opt, default_lr = FINETUNE_RECIPE[enc.model]
    lr = encoder_lr or default_lr
    rows = []
    for task_name in tasks:
        task = load_task(task_name, max_train=max_train)
        outs = []
        for seed in seeds:
            run = enc.make_run(seed)
            L = min(seq_len, run.config.max_positions)
            t0 = time.perf_counter()
            out = finetune(run, task, steps=steps, batch_size=batch_size, lr=lr, head_lr=head_lr, seq_len=L,
                           seed=seed, encoder_optimizer=opt, eval_train=False)
            out["wall_s"] = time.perf_counter() - t0
            outs.append(out)
            if log:
                log(f"{enc.recipe} / {task_name} / seed {seed}: test accuracy {out['test_accuracy']:.4f} "
                    f"(final train loss {out['final_loss']:.3f}, {out['wall_s']:.0f} s)")
        acc = [o["test_accuracy"] for o in outs]
        rows.append({"task": task_name, "recipe": enc.recipe, "pretrain_steps": enc.pretrain_steps,
                     "seeds": list(seeds), "accuracy_mean": statistics.fmean(acc),
                     "accuracy_std": statistics.stdev(acc) if len(acc) >= 2 else None,
                     "accuracies": acc, "model": enc.model, "pretrain_loss": enc.pretrain_loss,
                     "encoder": enc.source, "majority_baseline": outs[0]["majority_baseline"],
                     "train_examples": outs[0]["train_examples"], "test_examples": outs[0]["test_examples"],
                     "finetune": {"steps": steps, "batch_size": batch_size, "seq_len": L, "encoder_optimizer": opt,
                                  "encoder_lr": lr, "head_optimizer": "lamb", "head_lr": head_lr,
                                  "warmup_frac": 0.1},
                     "final_train_loss": [o["final_loss"] for o in outs],
                     "wall_s": [round(o["wall_s"], 1) for o in outs]})
    return rows


def merge_rows(old: List[dict], new: List[dict]) -> List[dict]:
    """``old`` with rows of the same (task, recipe, pretrain_steps) as a ``new`` row replaced."""
    key = lambda r: (r["task"], r["recipe"], r["pretrain_steps"])
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + list(new)


def _cell(rows: List[dict]) -> str:
    if not rows:
        return "-"
    r = rows[0]
    std = "" if r["accuracy_std"] is None else f" +- {100 * r['accuracy_std']:.1f}"
    return f"{100 * r['accuracy_mean']:.1f}{std} (n={len(r['seeds'])})"


def table_md(rows: List[dict]) -> str:
    """Table 1 shape: one row per (recipe, pretrain steps), columns pretraining loss + tasks."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)] + sorted(
        {r["task"] for r in rows} - set(TASKS))
    recipes = []
    for r in sorted(rows, key=lambda r: (r["pretrain_steps"] == 0, r["model"], r["recipe"], r["pretrain_steps"])):
        k = (r["recipe"], r["pretrain_steps"])
        if k not in recipes:
            recipes.append(k)
    lines = ["# Downstream suite (`python -m sibert.downstream`): the paper's Table 1 at this scale", "",
             "Test accuracy in % (mean +- std over fine-tuning seeds, n seeds); fine-tuning: BERT encoder Adam, "
             "SIBERT encoder LAMB, head LAMB (`sibert/downstream.py`); tasks and splits: "
             "`sibert/downstream_sets.py`. Pretraining loss: held-out MLM loss (nats) at the fine-tuned "
             "checkpoint; '-' for the random-init controls.", "",
             "| recipe | pretrain steps | pretraining loss | " + " | ".join(tasks) + " |",
             "|---|---|---|" + "---|" * len(tasks)]
    for recipe, steps in recipes:
        rs = [r for r in rows if r["recipe"] == recipe and r["pretrain_steps"] == steps]
        loss = next((r["pretrain_loss"] for r in rs if r.get("pretrain_loss") is not None), None)
        cells = [_cell([r for r in rs if r["task"] == t]) for t in tasks]
        lines.append(f"| {recipe} | {steps} | {'-' if loss is None else f'{loss:.3f}'} | " + " | ".join(cells) + " |")
    maj = []
    for t in tasks:
        m = next((r["majority_baseline"] for r in rows if r["task"] == t and "majority_baseline" in r), None)
        maj.append("-" if m is None else f"{100 * m:.1f}")
    lines.append("| majority class (test split) | - | - | " + " | ".join(maj) + " |")
    sizes = []
    for t in tasks:
        r = next((r for r in rows if r["task"] == t and "train_examples" in r), None)
        if r:
            sizes.append(f"{t}: {r['train_examples']} train / {r['test_examples']} test")
    ft = next((r["finetune"] for r in rows if "finetune" in r), None)
    lines += ["", "Splits: " + "; ".join(sizes) + "."]
    if ft:
        lines.append(f"Fine-tuning: {ft['steps']} steps, batch {ft['batch_size']}, sequence length {ft['seq_len']}.")
    return "\n".join(lines) + "\n"


def _check_finite(rows):
    for r in rows:
        for a in r["accuracies"]:
            if not (isinstance(a, float) and math.isfinite(a) and 0.0 <= a <= 1.0):
                raise RuntimeError(f"accuracy {a!r} of {r['recipe']} / {r['task']} is not in [0, 1]")


def _parse(argv):
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, exit 2
            raise DownstreamError(f"arguments: {message}")

    ap = Parser(prog="python -m sibert.downstream", description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="pretrained run directories (or NAME=RUN_DIR)")
    ap.add_argument("--random-init", default="", help="comma-separated models for random-init controls: sibert,bert")
    ap.add_argument("--preset", default="mini", help="preset of the random-init controls (default mini)")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated fine-tuning seeds")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--max-train", type=int, default=None, help="use only the first N train examples (smoke runs)")
    ap.add_argument("--out", required=True, help="results folder (table.json + table.md)")
    return ap.parse_args(argv)


def _validate(a):
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise DownstreamError(f"--tasks: unknown or empty {bad or a.tasks!r}; allowed: {', '.join(TASKS)}")
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        raise DownstreamError(f"--seeds: expected comma-separated integers, got {a.seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise DownstreamError(f"--seeds: expected distinct integers >= 0, got {a.seeds!r}")
    for name in ("steps", "batch_size", "seq_len"):
        if getattr(a, name) < 1:
            raise DownstreamError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(a, name)}")
    if a.seq_len < 3:
        raise DownstreamError(f"--seq-len: must be >= 3 ([CLS] text [SEP]), got {a.seq_len}")
    if a.max_train is not None and a.max_train < 1:
        raise DownstreamError(f"--max-train: must be >= 1, got {a.max_train}")
    models = [m.strip() for m in a.random_init.split(",") if m.strip()]
    if not a.run_dirs and not models:
        raise DownstreamError("RUN_DIR: give at least one run directory or --random-init sibert,bert")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise DownstreamError(f"--out: {a.out!r} exists and is not a directory")
    old = []
    if (out / "table.json").is_file():
        try:
            old = json.loads((out / "table.json").read_text())
            assert isinstance(old, list) and all(all(k in r for k in ROW_KEYS) for r in old)
        except (json.JSONDecodeError, AssertionError):
            raise DownstreamError(f"--out: {out / 'table.json'} is not a table of rows {{{', '.join(ROW_KEYS)}}}") \
                from None
    return tasks, seeds, models, out, old


def main(argv=None) -> int:
    try:
        a = _parse(argv)
        tasks, seeds, models, out, old = _validate(a)
        from sibert.downstream_sets import DownstreamDataError, load_examples

        try:
            for t in tasks:
                load_examples(t)
        except DownstreamDataError as e:
            raise DownstreamError(f"data: {e}") from None
        encoders = [run_encoder(s) for s in a.run_dirs]
        encoders += [random_init_encoder(m, a.preset) for m in models]
    except DownstreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)
    rows: List[dict] = []
    for enc in encoders:
        rows += evaluate_encoder(enc, tasks, seeds, steps=a.steps, batch_size=a.batch_size, seq_len=a.seq_len,
                                 max_train=a.max_train, log=log)
    _check_finite(rows)
    merged = merge_rows(old, rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(merged, indent=1))
    (out / "table.md").write_text(table_md(merged))
    print(table_md(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
