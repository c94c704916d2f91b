"""What ``--resume`` may change, and the check that nothing else changed.

A run is a recipe (model, data, optimizer, schedule, seed, ``steps``) plus run-control knobs
that do not change the numbers (how often to evaluate / checkpoint, how many checkpoints to
keep, the progress bar). On resume the recipe must be the run's own (``config.json``); only
:data:`RUN_CONTROL` keys may differ.

``steps`` is part of the recipe: the LR schedules are functions of it (SGD's /10 drops at
60%/90% of ``steps``, AdamW/LAMB's warmup and linear decay to 0 at ``steps``), so a different
``steps`` would make the LR jump at the resume step, and a smaller one would skip the final
evaluation. It is therefore refused with a message (to train longer, start a new run).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

from sibert.config import ConfigError, TrainConfig, apply_overrides

__all__ = ["RUN_CONTROL", "saved_config", "recipe_diff", "check_same_recipe"]

RUN_CONTROL = ("eval_every", "eval_batches", "ckpt_every", "keep_ckpts", "progress")


def saved_config(saved: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from a run's ``config.json`` (keys unknown to this version are ignored;
    fields the file lacks take today's defaults)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return apply_overrides(TrainConfig(), {k: v for k, v in saved.items() if k in known})


def recipe_diff(old: TrainConfig, new: TrainConfig) -> Dict[str, Tuple[Any, Any]]:
    """{key: (old, new)} over the recipe keys (everything but RUN_CONTROL) that differ."""
    a, b = old.to_dict(), new.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in RUN_CONTROL and a[k] != b[k]}


def check_same_recipe(old: TrainConfig, new: TrainConfig) -> None:
    """ConfigError (one line) naming EVERY field that differs (up to 8, then a count); when
    ``steps`` is among them, why it cannot change."""
    diff = recipe_diff(old, new)
    if not diff:
        return
    items = sorted(diff.items(), key=lambda kv: (kv[0] != "steps", kv[0]))
    shown = ", ".join(f"{k} ({o!r} -> {n!r})" for k, (o, n) in items[:8])
    more = f" and {len(diff) - 8} more" if len(diff) > 8 else ""
    why = ""
    if "steps" in diff:
        o, n = diff["steps"]
        why = (f"; steps cannot change on resume (the run has steps={o}, this command {n}): the LR schedule is a "
               f"function of steps, so the LR would jump at the resume step; resume with steps={o}, or start a "
               f"new run in a new --out")
    raise ConfigError(f"--resume: the command's config differs from the run's config.json in {shown}{more}"
                      f"{why}; allowed to change on resume: {', '.join(RUN_CONTROL)}")
