"""A training run directory is self-contained: evaluation and export read only the run directory.

    RUN_DIR/
      config.json       the run's :class:`sibert.config.TrainConfig` (-> ``ModelConfig.from_train``)
      tokenizer.json    the WordPiece tokenizer the run's token ids come from (``tokenizers`` JSON;
                        copied here by :func:`sibert.train.train` from the token cache)
      checkpoints/N/    orbax: ``state`` = {params, opt_state, step, rng}, ``meta``

:func:`load_run` rebuilds (config, model config, parameters of one checkpoint, tokenizer) from
these files alone; a run copied to another machine (without ``~/.cache/scaleinv``) can be
evaluated and exported. Only committed checkpoints are read (orbax finalized the step and wrote
its commit markers: :func:`sibert.checkpoints.step_problem`); when the newest step is not
committed (a save in progress or interrupted) :func:`load_run` refuses rather than silently
taking an older one, and names the committed steps for ``--step``. Only the ``params`` subtree of the orbax state is read (orbax partial
restore, shapes from the checkpoint's own metadata), so no optimizer has to be rebuilt.

Token format (as in :mod:`sibert.data`): pretraining rows are windows of the document stream,
``[SEP]`` between documents, no ``[CLS]``; text encoded one example per row
(:func:`sibert.data.encode_examples`) is ``[CLS] text [SEP] [PAD]...`` as BERT / Hugging Face
do. The token ids of the text itself are the same in both.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["RunError", "Run", "CONFIG_FILE", "TOKENIZER_FILE", "save_tokenizer", "checkpoint_steps",
           "uncommitted_steps", "load_run"]

CONFIG_FILE, TOKENIZER_FILE, CHECKPOINTS = "config.json", "tokenizer.json", "checkpoints"


class RunError(ValueError):
    """A run directory that cannot be loaded; the message names the missing or bad file."""


def save_tokenizer(run_dir, tokenizer_path) -> Path:
    """Copy the tokenizer file into ``run_dir`` (atomic: temporary file + rename); returns its path.

    An existing ``RUN_DIR/tokenizer.json`` with the same content is left as it is."""
    dst = Path(run_dir) / TOKENIZER_FILE
    src = Path(tokenizer_path)
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return dst
    tmp = dst.with_suffix(f".tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def _step_dirs(run_dir) -> list:
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def uncommitted_steps(run_dir) -> dict:
    """{step: what is wrong} for the step folders under ``RUN_DIR/checkpoints`` that orbax has
    not committed (:func:`sibert.checkpoints.step_problem`: not finalized, no commit markers when
    this orbax writes them, ``state/`` / ``meta/`` / metadata missing)."""
    from sibert.checkpoints import MARKER, step_problem

    dirs = _step_dirs(run_dir)
    markers_expected = any((p / MARKER).is_file() for _, p in dirs)
    problems = {s: step_problem(p, markers_expected) for s, p in dirs}
    return {s: why for s, why in problems.items() if why is not None}


def checkpoint_steps(run_dir) -> list:
    """Steps of the committed (finished) checkpoints under ``RUN_DIR/checkpoints`` (ascending)."""
    bad = uncommitted_steps(run_dir)
    return [s for s, _ in _step_dirs(run_dir) if s not in bad]


@dataclass(frozen=True)
class Run:
    """Everything a run directory holds that evaluation / export need."""

    path: Path
    config: Any            # sibert.config.TrainConfig
    model_config: Any      # sibert.model.ModelConfig
    params: Any            # {"encoder": ..., "head": ...} numpy/jax arrays of checkpoint ``step``
    step: int
    tokenizer: Any         # tokenizers.Tokenizer

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE


def _restore_params(state_dir: Path):
    """The ``params`` subtree of an orbax state checkpoint, on the default device."""
    import jax
    import orbax.checkpoint as ocp

    absl = logging.getLogger("absl")   # orbax warns that the step's metadata file is one level up
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        ckptr = ocp.PyTreeCheckpointer()
        tree = ckptr.metadata(state_dir)
        tree = getattr(tree, "item_metadata", tree)
        tree = getattr(tree, "tree", tree)
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = {"params": jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), tree["params"])}
        restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), abstract)
        out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args,
                                                                   partial_restore=True))
    finally:
        absl.setLevel(level)
    return out["params"]


def _cached_tokenizer_hint(cfg) -> str:
    """Where the token cache of ``cfg`` keeps its tokenizer (for the error message only)."""
    try:
        from sibert.data import cache_entry
        return str(cache_entry(cfg.source, cfg.vocab_size, cfg.heldout_fraction, cfg.cache_dir or None) / TOKENIZER_FILE)
    except Exception:  # source gone: no precise path
        return "the run's token cache (SCALEINV_CACHE, else $XDG_CACHE_HOME/scaleinv, default ~/.cache/scaleinv/sibert/<key>/tokenizer.json)"


def load_run(run_dir, step: Optional[int] = None) -> Run:
    """Load ``run_dir`` (its newest checkpoint, or ``step``); :class:`RunError` names what is missing."""
    from tokenizers import Tokenizer

    from sibert.config import ConfigError, TrainConfig, apply_overrides, validate
    from sibert.model import ModelConfig

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise RunError(f"RUN_DIR: {str(run_dir)!r} is not a directory")
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise RunError(f"RUN_DIR: {str(run_dir)!r} has no {CONFIG_FILE} (not a `scaleinv train` run directory)")
    try:
        cfg = validate(apply_overrides(TrainConfig(), json.loads(cfg_path.read_text())))
    except (json.JSONDecodeError, ConfigError) as e:
        raise RunError(f"RUN_DIR: {cfg_path} is not a valid run config: {e}") from None
    tok_path = run_dir / TOKENIZER_FILE
    if not tok_path.is_file():
        raise RunError(f"RUN_DIR: {str(run_dir)!r} has no {TOKENIZER_FILE} (a run trained before the tokenizer "
                       f"was saved in the run directory: copy it there from {_cached_tokenizer_hint(cfg)})")
    steps, bad = checkpoint_steps(run_dir), uncommitted_steps(run_dir)
    allowed = f"committed: {', '.join(map(str, steps))}" if steps else "no committed checkpoint"
    newest = max([*steps, *bad], default=None)
    if newest is None:
        raise RunError(f"RUN_DIR: {str(run_dir)!r} has no checkpoint under {CHECKPOINTS}/")
    if step is None and newest in bad:   # never fall back silently past an unfinished save
        raise RunError(f"RUN_DIR: the newest checkpoint {newest} is not committed ({bad[newest]}); "
                       f"choose one with --step ({allowed})")
    if step is None:
        step = newest
    elif step in bad:
        raise RunError(f"--step: checkpoint {step} in {str(run_dir)!r} is not committed ({bad[step]}); {allowed}")
    elif step not in steps:
        raise RunError(f"--step: no checkpoint {step} in {str(run_dir)!r}; allowed: {', '.join(map(str, steps))}")
    try:
        params = _restore_params(run_dir / CHECKPOINTS / str(step) / "state")
    except Exception as e:  # orbax raises many types for a damaged checkpoint
        raise RunError(f"RUN_DIR: checkpoint {step} cannot be read ({type(e).__name__}: {e})") from None
    tok = Tokenizer.from_file(str(tok_path))
    mcfg = ModelConfig.from_train(cfg)
    if tok.get_vocab_size() > mcfg.vocab_size:
        raise RunError(f"RUN_DIR: {TOKENIZER_FILE} has {tok.get_vocab_size()} tokens > vocab_size {mcfg.vocab_size}")
    return Run(path=run_dir, config=cfg, model_config=mcfg, params=params, step=int(step), tokenizer=tok)
