"""``scaleinv train``: MLM pretraining of SIBERT or the BERT baseline on real text.

    scaleinv train --model sibert --optimizer sgd-wd-rgc --preset tiny --out runs/si
    scaleinv train --model bert --optimizer adamw --preset tiny --out runs/bert --set steps=300
    scaleinv train --out runs/si --resume                   # continue a killed run
    scaleinv train --config my.toml --out runs/x             # TOML overrides ([train] table or top level)
    scaleinv train --out runs/si --tensorboard tb/si         # also TensorBoard scalars (tensorboard extra)

Precedence: preset < model/optimizer defaults < TOML file < ``--set key=value`` < ``--seed``.

Resume (``--resume``): continue from the newest intact checkpoint in ``--out``. Either give
only ``--out`` (plus run-control ``--set``: eval_every, eval_batches, ckpt_every, keep_ckpts,
progress; ``--no-progress``): the run's ``config.json`` is used; or rerun the ORIGINAL command
plus ``--resume``: the config it builds must equal the run's (else refused naming the fields).
``steps`` cannot change on resume (the LR schedule depends on it). A run that never reached
a checkpoint restarts from step 0; a finished run is left unchanged.

TensorBoard (``--tensorboard DIR``, needs tensorboardX: ``pip install 'scaleinv[tensorboard]'``):
every row written to ``metrics.jsonl`` / ``eval.jsonl`` is also written to DIR as scalar events
``train/<key>`` / ``eval/<key>`` at the row's ``step`` (:mod:`scaleinv.tensorboard`), after each
metrics fetch. DIR is checked before anything is written (an unwritable DIR or a missing
tensorboardX: one line, exit 2); on ``--resume`` TensorBoard drops the events from the resumed
step on that the killed session wrote. ``scaleinv plot`` reads the JSONL as before.

Exit codes: 0 done (or already complete), 2 bad input or refused (one line
``scaleinv train: error: ...``, nothing written; also when another trainer holds ``--out``),
3 stopped at a non-finite loss (last good checkpoint kept), 4 ``--resume`` found checkpoints
but none intact (each damaged one reported; nothing changed), 5 a checkpoint could not be
written (one line naming the step and the last good checkpoint; lock released), 6 multi-host:
a peer died, hangs or never joined within ``--peer-timeout`` seconds (default 120; one line naming
the peer and the last good checkpoint, lock and unfinished checkpoint folders removed by the
process that held them; :mod:`sibert.peers`), 143 / 130
stopped by SIGTERM / SIGINT (:mod:`sibert.preempt`: the step in flight is finished, a
checkpoint written at it within ``--grace-period`` seconds, the lock released, one line;
``--resume`` continues exactly).
"""
from __future__ import annotations

import json
import os
import sys

from sibert.config import MODELS, OPTIMIZERS, PRESETS

EXIT_OK, EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_NO_INTACT_CHECKPOINT, EXIT_CHECKPOINT_WRITE = 0, 2, 3, 4, 5
EXIT_PEER = 6   # sibert.peers.EXIT_PEER


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
    p.add_argument("--seed", default=None, help="random seed, an integer in 0..2**32-1 (validated with the config)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write the metrics / eval rows as TensorBoard scalar events to DIR "
                        "(needs tensorboardX: pip install 'scaleinv[tensorboard]')")
    p.add_argument("--grace-period", type=_grace, default=30.0, metavar="SECONDS",
                   help="after SIGTERM / SIGINT: seconds to finish the step and write a final checkpoint "
                        "before the save is abandoned (default 30; 0: abandon at once)")
    p.add_argument("--peer-timeout", type=_peer_timeout, default=120.0, metavar="SECONDS",
                   help="multi-host: end the run (exit 6, one line naming the peer) when a peer has not joined "
                        "within this many seconds or stops answering (default 120)")


def _grace(value: str) -> float:
    import argparse
    import math
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {value!r}")
    return v


def _peer_timeout(value: str) -> float:
    import argparse
    import math
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {value!r}")
    return v


def _err(msg: str) -> int:
    print(f"scaleinv train: error: {msg}", file=sys.stderr)
    return 2


def _recipe_args_given(args, sets) -> bool:
    from sibert.resume import RUN_CONTROL
    return bool(args.model or args.optimizer or args.preset or args.config or args.seed is not None
                or any(k not in RUN_CONTROL for k in sets))


def _only_sets(args) -> bool:
    """No recipe flag but ``--set``: the command does not describe a whole recipe."""
    return not (args.model or args.optimizer or args.preset or args.config or args.seed is not None)


def _fresh_config(args, sets):
    from sibert.config import apply_overrides, load_toml, preset
    cfg = preset(args.preset or "tiny", args.model or "sibert", args.optimizer)
    if args.config:
        cfg = apply_overrides(cfg, load_toml(args.config))
    cfg = apply_overrides(cfg, sets)
    if args.seed is not None:
        cfg = apply_overrides(cfg, {"seed": args.seed})
    return cfg


def _check_flags_agree_with_sets(args, sets) -> None:
    """``--model X --set model=Y`` (or ``--optimizer``) would silently train a hybrid: refused."""
    from sibert.config import MODELS, OPTIMIZERS, ConfigError
    for field, allowed in (("model", MODELS), ("optimizer", OPTIMIZERS)):
        flag = getattr(args, field)
        if flag is not None and field in sets and sets[field] != flag:
            raise ConfigError(f"{field}: --{field} {flag} contradicts --set {field}={sets[field]}; "
                              f"allowed: one of them, or the same value ({', '.join(allowed)})")


def build_config(args):
    """TrainConfig from the arguments (raises ConfigError); checks ``--out`` without writing."""
    from sibert.config import ConfigError, apply_overrides, parse_set_args, validate
    from sibert.preflight import check_cache_dir, check_config_file, check_distributed_env, check_run_dir
    from sibert.resume import RUN_CONTROL, check_same_recipe, saved_config
    from sibert.runlock import holder_name, is_stale, lock_holder

    check_distributed_env()
    sets = parse_set_args(args.set)
    _check_flags_agree_with_sets(args, sets)
    out = check_run_dir(args.out)
    if args.config:
        check_config_file(args.config)
    # multi-host: processes other than 0 share process 0's --out (it holds the lock, writes the logs)
    secondary = os.environ.get("JAX_PROCESS_ID", "0").strip() not in ("", "0")
    holder = lock_holder(out) if out.is_dir() and not secondary else None
    if holder is not None and not is_stale(holder):
        raise ConfigError(f"--out: {str(out)!r} is in use by a running trainer ({holder_name(holder)}); wait for it, or "
                          f"delete {out / '.lock'} if that process is gone")
    if args.resume:
        cfg_path = out / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"--resume: {str(out)!r} has no config.json (no run started there; "
                              f"start a new run without --resume)")
        try:
            saved = saved_config(json.loads(cfg_path.read_text()))
        except ValueError as e:
            raise ConfigError(f"--resume: {cfg_path} is not a readable config ({e})") from None
        if _recipe_args_given(args, sets) and not _only_sets(args):
            # the original command plus --resume: it must build the run's own recipe
            cfg = _fresh_config(args, sets)
            check_same_recipe(saved, cfg)
            cfg = apply_overrides(saved, {k: getattr(cfg, k) for k in RUN_CONTROL})
        elif _recipe_args_given(args, sets):
            # `--out RUN --resume --set key=value`: the run's config plus these keys; refused
            # naming exactly the keys that change the recipe (not everything a preset would)
            check_same_recipe(saved, apply_overrides(saved, sets))
            cfg = apply_overrides(saved, sets)
        else:
            cfg = apply_overrides(saved, sets)
    else:
        if not secondary and out.exists() and any(p.name != ".lock" for p in out.iterdir()):
            raise ConfigError(f"--out: {str(out)!r} exists and is not empty (use --resume, or a new directory)")
        cfg = _fresh_config(args, sets)
    if args.no_progress:
        cfg = apply_overrides(cfg, {"progress": False})
    validate(cfg)
    check_cache_dir(cfg.cache_dir)
    return cfg


def _preempted_line(e, out) -> str:
    from sibert.preempt import signal_name
    sig = signal_name(e.signum)
    if e.step is None:
        return f"scaleinv train: stopped by {sig} before the first step: nothing trained, nothing kept; exit {e.exit_code}"
    if e.checkpoint is not None:
        return (f"scaleinv train: stopped by {sig} at step {e.step}: checkpoint {e.checkpoint} written, lock released; "
                f"continue with: scaleinv train --out {out} --resume; exit {e.exit_code}")
    return (f"scaleinv train: stopped by {sig} at step {e.step}: the final checkpoint could not be written "
            f"({e.problem}); lock released; --resume continues from the last good checkpoint; exit {e.exit_code}")


def _exit_without_stray_threads(code: int) -> int:
    """``code``, after making sure no non-daemon thread (orbax's, after a failed save) keeps the
    interpreter from exiting: they are woken and joined (:func:`sibert.checkpoints.release_orbax_threads`);
    any still alive after that would block ``threading._shutdown`` forever, so then -- and only
    then -- the process ends with ``os._exit(code)`` (output flushed first; lock and files are
    already released / closed by :func:`sibert.train.train`)."""
    if "sibert.checkpoints" in sys.modules:
        left = sys.modules["sibert.checkpoints"].release_orbax_threads()
        if left:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return code


def _supervise(args) -> int:
    """Multi-host (JAX_COORDINATOR_ADDRESS set): check everything up front here, then run the
    trainer as a supervised child (:mod:`sibert.peers`: a dead or missing peer ends it, exit 6)."""
    from sibert import peers
    from sibert.config import ConfigError

    try:
        build_config(args)
    except ConfigError as e:
        return _err(str(e))
    argv = getattr(args, "argv", None) or sys.argv[1:]
    return peers.supervise([sys.executable, "-m", "scaleinv.cli", *argv], args.out, args.peer_timeout)


def run(args) -> int:
    from sibert import peers
    from sibert.preempt import Preempted, StopSignals

    if peers.supervise_wanted():
        return _supervise(args)
    peers.child_setup()   # in a supervised child: Python output to the parent's stdout / stderr
    with StopSignals(args.grace_period) as stop:
        try:
            return _exit_without_stray_threads(_run(args, stop))
        except Preempted as e:
            print(_preempted_line(e, args.out), file=sys.stderr, flush=True)
            return _exit_without_stray_threads(e.exit_code)


def _run(args, stop) -> int:
    from sibert.config import ConfigError
    from sibert.data import DataError

    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _err(str(e))
    tb = None
    if getattr(args, "tensorboard", None):
        from scaleinv.tensorboard import ScalarWriter, TensorBoardError
        try:
            tb = ScalarWriter(args.tensorboard, purge=args.resume)  # checks DIR; writes on the first row
        except TensorBoardError as e:
            return _err(f"--tensorboard: {e}")
    from sibert.train import train  # heavy imports (jax) only now

    from sibert.checkpoints import CheckpointError, CheckpointWriteError, last_good_step
    from sibert.runlock import RunLocked

    def on_rows(kind, rows):
        for r in rows:
            tb.add_row(r, prefix=f"{kind}/")
        tb.flush()

    try:
        summary = train(cfg, args.out, resume=args.resume, stop=stop,
                        on_rows=on_rows if tb is not None else None)
    except (ConfigError, DataError, RunLocked) as e:
        return _err(str(e))
    except CheckpointError as e:
        print(f"scaleinv train: error: {e}", file=sys.stderr)
        return EXIT_NO_INTACT_CHECKPOINT
    except CheckpointWriteError as e:
        good = last_good_step(args.out)
        print(f"scaleinv train: error: checkpoints: {e}; the run stopped, lock released; the last good checkpoint "
              f"is {'step ' + str(good) if good is not None else 'none'} (--resume continues from it once "
              f"{args.out} is writable again); exit {EXIT_CHECKPOINT_WRITE}", file=sys.stderr)
        return EXIT_CHECKPOINT_WRITE
    except Exception as e:
        from sibert import peers
        peers.report_failure(e)   # a multi-host peer gone: the supervising parent ends this process
        raise
    finally:
        if tb is not None:
            tb.close()
    ev = summary.get("final_eval") or {}
    print(json.dumps({"status": summary["status"], "steps_done": summary["steps_done"],
                      "heldout_loss": ev.get("heldout_loss"), "heldout_accuracy": ev.get("heldout_accuracy"),
                      "unigram_xent": summary["unigram_baseline"]["train_unigram_xent"],
                      "wall_s": round(summary["wall_s"], 1)}))
    return EXIT_OK if summary["status"] == "ok" else EXIT_NONFINITE
