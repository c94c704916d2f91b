"""Thin wrapper around :mod:`sibert.train` for timing: a jitted training step on a synthetic batch.

The step is exactly ``sibert.train.build_steps(...)[0]`` (forward + backward + optimizer update
+ the per-step diagnostics the trainer logs), jitted with the trainer's shardings over a 1-D
``data`` mesh and the state donated, as in :func:`sibert.train.train`. Only the batch is
synthetic: uniformly random non-special token ids, masked with :func:`sibert.data.mask_rows`
(M = round(0.15 L) predictions per row), so no corpus or tokenizer is needed. Throughput does
not depend on token values.

``encoder_optimizer`` can replace the encoder optimizer of the config by a variant that is not a
config option: ``"sgd-wd+clip_by_global_norm"`` = optax.clip_by_global_norm(1.0) then SGD+WD
(the usual absolute clipping, for the clipping-overhead comparison).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

__all__ = ["synthetic_batch", "make_tx", "make_step", "tiny_config"]

ENCODER_VARIANTS = ("sgd-wd-rgc", "sgd-wd", "sgd-wd+clip_by_global_norm", "sgd", "adamw")


def synthetic_batch(cfg, seed: int = 0) -> Dict[str, np.ndarray]:
    from sibert.data import NUM_SPECIAL, mask_rows

    rng = np.random.default_rng(seed)
    rows = rng.integers(NUM_SPECIAL, cfg.vocab_size, (cfg.batch_size, cfg.seq_len)).astype(np.int32)
    return mask_rows(rows, rng, cfg.vocab_size, cfg.mask_prob)


def make_tx(cfg, encoder_optimizer: Optional[str] = None):
    """(tx, encoder LR schedule) as :func:`sibert.train.make_optimizer`, optionally with the
    encoder optimizer replaced by one of ``ENCODER_VARIANTS``."""
    import dataclasses

    import optax

    from scaleinv.optim import sgd_wd
    from sibert.train import make_optimizer, sgd_schedule

    if encoder_optimizer is None or encoder_optimizer == cfg.optimizer:
        tx, enc_lr, _ = make_optimizer(cfg)
        return tx, enc_lr
    if encoder_optimizer not in ENCODER_VARIANTS:
        raise ValueError(f"encoder_optimizer: unknown value {encoder_optimizer!r}; allowed: "
                         f"{', '.join(ENCODER_VARIANTS)}")
    if encoder_optimizer != "sgd-wd+clip_by_global_norm":
        tx, enc_lr, _ = make_optimizer(dataclasses.replace(cfg, optimizer=encoder_optimizer))
        return tx, enc_lr
    # the trainer's multi_transform with the encoder = clip_by_global_norm + SGD+WD
    from sibert.train import encoder_head_transform, make_head_optimizer

    enc_lr = sgd_schedule(cfg.lr, cfg.steps, cfg.lr_drop_fractions)
    enc = optax.chain(optax.clip_by_global_norm(1.0), sgd_wd(enc_lr, cfg.weight_decay))
    return encoder_head_transform(enc, make_head_optimizer(cfg)[0]), enc_lr


def make_step(cfg, encoder_optimizer: Optional[str] = None, seed: int = 0, devices=None
              ) -> Tuple[Callable[[], Any], Dict[str, Any]]:
    """A zero-argument callable running ONE training step (state carried inside), and info
    {tokens_per_step, n_devices, n_params}. Data parallel over ``devices`` (default: all)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from sibert.model import MLMModel, ModelConfig
    from sibert.train import build_steps, init_state, make_mesh, shard_batch

    mesh = make_mesh(devices)
    ndev = mesh.shape["data"]
    if cfg.batch_size % ndev:
        raise ValueError(f"batch_size: must be divisible by the number of devices ({ndev}), got {cfg.batch_size}")
    mcfg = ModelConfig.from_train(cfg)
    model = MLMModel(mcfg)
    tx, enc_lr = make_tx(cfg, encoder_optimizer)
    state, state_sh = init_state(cfg, mcfg, tx, mesh, jax.random.PRNGKey(seed))
    train_step, _ = build_steps(cfg, model, tx, enc_lr)
    batch_sh = {k: NamedSharding(mesh, P("data")) for k in ("tokens", "mlm_positions", "mlm_labels", "mlm_weights")}
    step_fn = jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                      donate_argnums=0)
    batch = shard_batch(synthetic_batch(cfg, seed), mesh)
    box = {"state": state}

    def call():
        box["state"], metrics = step_fn(box["state"], batch)
        return box["state"], metrics["loss"]

    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
    info = {"tokens_per_step": cfg.batch_size * cfg.seq_len, "n_devices": ndev, "n_params": n_params,
            "encoder_optimizer": encoder_optimizer or cfg.optimizer, "head_optimizer": cfg.head_optimizer,
            "step_fn": step_fn, "box": box, "batch": batch, "tx": tx}
    return call, info


def tiny_config(preset: str = "tiny", model: str = "sibert", optimizer: Optional[str] = None, **over):
    """A validated preset with overrides (e.g. batch_size for --quick)."""
    import dataclasses

    from sibert.config import preset as _preset, validate

    return validate(dataclasses.replace(_preset(preset, model, optimizer), **over))
