"""``scaleinv train``: MLM pretraining of SIBERT or the BERT baseline on real text.

    scaleinv train --model sibert --optimizer sgd-wd-rgc --preset tiny --out runs/si
    scaleinv train --model bert --optimizer adamw --preset tiny --out runs/bert --set steps=300
    scaleinv train --out runs/si --resume                   # continue a killed run
    scaleinv train --config my.toml --out runs/x             # TOML overrides ([train] table or top level)

Precedence: preset < model/optimizer defaults < TOML file < ``--set key=value`` < ``--seed``.
On ``--resume`` the run's saved ``config.json`` is used; only run-control keys (steps,
eval_every, eval_batches, ckpt_every, keep_ckpts, progress) may be changed with ``--set``.
Exit codes: 0 done, 2 bad input (nothing written), 3 stopped at a non-finite loss.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sibert.config import MODELS, OPTIMIZERS, PRESETS

RESUME_OVERRIDABLE = ("steps", "eval_every", "eval_batches", "ckpt_every", "keep_ckpts", "progress")


def add_arguments(p):
    p.add_argument("--model", choices=MODELS, default=None, help="sibert (default) or bert")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="encoder optimizer (default: sgd-wd-rgc for sibert, adamw for bert)")
    p.add_argument("--preset", choices=PRESETS, default=None, help="model/run size (default tiny)")
    p.add_argument("--config", default=None, help="TOML file of config overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (repeatable)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def _err(msg: str) -> int:
    print(f"scaleinv train: error: {msg}", file=sys.stderr)
    return 2


def build_config(args):
    """TrainConfig from the arguments (raises ConfigError)."""
    from sibert.config import ConfigError, TrainConfig, apply_overrides, load_toml, parse_set_args, preset, validate

    sets = parse_set_args(args.set)
    out = Path(args.out)
    if args.resume:
        cfg_path = out / "config.json"
        if not (out / "checkpoints").is_dir() or not cfg_path.is_file():
            raise ConfigError(f"--resume: {str(out)!r} has no checkpoints/ and config.json "
                              f"(start a new run without --resume)")
        saved = json.loads(cfg_path.read_text())
        cfg = apply_overrides(TrainConfig(), saved)
        for flag in ("model", "optimizer"):
            v = getattr(args, flag)
            if v is not None and v != getattr(cfg, flag):
                raise ConfigError(f"--resume: --{flag} {v} differs from the run's {flag}={getattr(cfg, flag)}")
        bad = [k for k in sets if k not in RESUME_OVERRIDABLE]
        if bad or args.config or args.seed is not None or args.preset:
            what = ", ".join(bad) or "--config/--seed/--preset"
            raise ConfigError(f"--resume: cannot change {what}; allowed with --set on resume: "
                              f"{', '.join(RESUME_OVERRIDABLE)}")
        cfg = apply_overrides(cfg, sets)
    else:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out: {str(out)!r} exists and is not empty (use --resume, or a new directory)")
        cfg = preset(args.preset or "tiny", args.model or "sibert", args.optimizer)
        if args.config:
            cfg = apply_overrides(cfg, load_toml(args.config))
        cfg = apply_overrides(cfg, sets)
        if args.seed is not None:
            cfg = apply_overrides(cfg, {"seed": args.seed})
    if args.no_progress:
        cfg = apply_overrides(cfg, {"progress": False})
    return validate(cfg)


def run(args) -> int:
    from sibert.config import ConfigError
    from sibert.data import DataError

    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _err(str(e))
    from sibert.train import train  # heavy imports (jax) only now

    try:
        summary = train(cfg, args.out, resume=args.resume)
    except (ConfigError, DataError) as e:
        return _err(str(e))
    ev = summary.get("final_eval") or {}
    print(json.dumps({"status": summary["status"], "steps_done": summary["steps_done"],
                      "heldout_loss": ev.get("heldout_loss"), "heldout_accuracy": ev.get("heldout_accuracy"),
                      "unigram_xent": summary["unigram_baseline"]["train_unigram_xent"],
                      "wall_s": round(summary["wall_s"], 1)}))
    return 0 if summary["status"] == "ok" else 3
