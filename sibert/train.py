"""MLM pretraining loop for SIBERT / BERT: optimizers, device mesh, metrics, checkpoints.

* Optimizer: ``optax.multi_transform`` over the two parameter groups of :mod:`sibert.model`:
  ``encoder`` (scale invariant for SIBERT) gets ``cfg.optimizer`` (SGD+WD+relative global
  clipping from :mod:`scaleinv.optim`, or AdamW), ``head`` gets ``cfg.head_optimizer`` (LAMB or
  AdamW). Schedules: SGD constant LR with /10 drops (default at 60% and 90% of training, no
  warmup); AdamW / LAMB linear warmup then linear decay to 0.
* Per-step metrics (``metrics.jsonl``, one JSON object per step): loss, MLM accuracy, encoder
  ||x||, ||g|| (before clipping), LR eta_t, effective LR eta_t / ||x||^2, clip fired, angular
  update angle(x_t, x_{t+1}) of the encoder (:func:`scaleinv.diagnostics.step_diagnostics`),
  tokens/s (mean over the window of up to ``FETCH_EVERY`` steps whose metrics are fetched from the
  device together: the host never waits for a single step). Held-out evaluation every
  ``eval_every`` steps (``eval.jsonl``).
* Parallelism: a 1-D ``jax.sharding.Mesh`` with axis ``data`` over all devices (all hosts, after
  ``jax.distributed.initialize()`` when JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  JAX_PROCESS_ID are set). The batch is sharded over ``data``; parameters and optimizer states are
  replicated, or with ``fsdp=True`` every tensor whose leading dimension divides the device count
  is sharded along it (XLA inserts the gathers). Each process feeds its slice of the global
  batch. The result is the same computation as on one device.
* Checkpoints: orbax ``CheckpointManager`` under ``RUN_DIR/checkpoints`` every ``ckpt_every``
  steps and at the end: params, both optimizer states, step, RNG key; the data position is the
  step (batches are a pure function of (seed, step), see :mod:`sibert.data`). ``resume=True``
  restores the newest INTACT one (:mod:`sibert.checkpoints`: damaged / unfinished newer ones are
  reported in one line each and moved to ``RUN_DIR/damaged_checkpoints``) and truncates the
  metric logs to it, so a killed run continues exactly.
* Before anything is written: output path, memory estimate from ``jax.eval_shape``
  (:mod:`sibert.preflight`), resume recipe (:mod:`sibert.resume`), batch size vs corpus; then
  ``RUN_DIR/.lock`` (:mod:`sibert.runlock`) keeps a second trainer out of the directory.
* Progress: a live bar on a terminal, a plain line every steps/20 in a log (:mod:`scaleinv.progress`).
* Non-finite loss or parameters: reported with the step number; the run stops without saving
  (the last good checkpoint stays) and :func:`train` returns status ``"nonfinite"``.
* Preemption (``stop``, a :class:`sibert.preempt.StopSignals`): SIGTERM / SIGINT inside the loop
  finish the step in flight, write its metrics, save a checkpoint at that step and raise
  :class:`sibert.preempt.Preempted`; before the loop they raise it at once (nothing trained).
* A checkpoint that cannot be written raises :class:`sibert.checkpoints.CheckpointWriteError`;
  the orbax manager is always closed and its waiting threads released (no hang at exit).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from scaleinv import registry
from scaleinv.angular import leaf_angle, path_name
from scaleinv.diagnostics import step_diagnostics, tree_norm
from sibert.checkpoints import (CheckpointError, CheckpointWriteError, checkpoint_manager,  # noqa: F401
                                close_manager, finish_checkpoints, quiet_orbax_errors, restore_checkpoint,
                                restore_latest_intact, save_checkpoint)
from sibert.config import ConfigError, TrainConfig, validate
from sibert.data import MLMData, load_mlm_data
from sibert.model import ENCODER, HEAD, MLMModel, ModelConfig, init_params, mlm_loss
from sibert.runs import save_tokenizer

Schedule = Callable[[Any], Any]
FETCH_EVERY = 16   # steps whose metrics are fetched from the device in one transfer (see train)


# ----------------------------------------------------------------------------- optimizers
def sgd_schedule(lr: float, steps: int, drops, warmup_frac: float = 0.0) -> Schedule:
    """eta_t = lr * 0.1^(number of drop points <= t), drop points = round(f * steps); with
    ``warmup_frac`` > 0 a linear warmup lr/W, 2 lr/W, ..., lr over the first W = round(warmup_frac *
    steps) steps (the SIBERT recipe has none: warmup_frac = 0)."""
    bounds = {max(1, int(round(f * steps))): 0.1 for f in drops}
    const = optax.piecewise_constant_schedule(lr, bounds)
    warm = int(round(warmup_frac * steps))
    if warm == 0:
        return const
    return lambda t: jnp.minimum((jnp.asarray(t, jnp.float32) + 1.0) / warm, 1.0) * const(t)


def wd_schedule(weight_decay: float, steps: int, drops):
    """lambda_t = weight_decay * 0.1^(number of drop points <= t), drop points = round(f * steps)
    (``wd_drops``); the plain float when there are no drops (the optimizer state is then that of a
    constant WD, as in every run before ``wd_drops`` existed). Dropping LR and WD by the same factor
    at the same step keeps eta/lambda, hence the SGD + WD equilibrium norm (||x*||^4 ~ eta sigma^2 /
    (2 lambda)), and divides the equilibrium angle sqrt(2 eta lambda) by that factor at once."""
    if not drops:
        return weight_decay
    return optax.piecewise_constant_schedule(
        weight_decay, {max(1, int(round(f * steps))): 0.1 for f in drops})


def warmup_linear_schedule(lr: float, steps: int, warmup_frac: float) -> Schedule:
    """Linear warmup over W = round(warmup_frac * steps) steps, eta_t = lr (t+1)/W for t < W (the
    first step already moves: lr/W, not 0), then linear decay lr -> 0 from step W to ``steps``."""
    warm = int(round(warmup_frac * steps))
    decay = optax.linear_schedule(lr, 0.0, max(1, steps - warm))
    if warm == 0:
        return decay
    ramp = lambda t: lr * jnp.minimum((jnp.asarray(t, jnp.float32) + 1.0) / warm, 1.0)
    return optax.join_schedules([ramp, decay], [warm])


def _matrix_mask(tree):
    """Weight decay only on matrices (ndim >= 2), BERT's convention for AdamW / LAMB."""
    return jax.tree.map(lambda x: x.ndim >= 2, tree)


def make_head_optimizer(cfg: TrainConfig):
    """(head tx, head LR schedule): LAMB or AdamW, warmup + linear decay, WD on matrices only."""
    head_lr = warmup_linear_schedule(cfg.head_lr, cfg.steps, cfg.head_warmup_frac)
    if cfg.head_optimizer == "lamb":
        head = optax.lamb(head_lr, cfg.adam_b1, cfg.adam_b2, weight_decay=cfg.head_weight_decay,
                          mask=_matrix_mask)
    else:
        head = optax.adamw(head_lr, cfg.adam_b1, cfg.adam_b2, weight_decay=cfg.head_weight_decay,
                           mask=_matrix_mask)
    return head, head_lr


def encoder_head_transform(encoder_tx, head_tx):
    """``optax.multi_transform`` sending params["encoder"] to ``encoder_tx``, params["head"] to ``head_tx``."""
    labels = lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}
    return optax.multi_transform({ENCODER: encoder_tx, HEAD: head_tx}, labels)


def make_encoder_optimizer(cfg: TrainConfig):
    """(encoder tx, encoder LR schedule) for ``cfg.optimizer``, built by the optimizer registry
    (:mod:`scaleinv.registry`: every registered name trains here).

    LR schedule by the entry's family: "sgd" (``sgd-wd-rgc``, ``sgd-wd``, ``sgd``, ``sgdm``,
    ``sgdc``, ``rv-sgd-wd``, ``rv-sgdm``) :func:`sgd_schedule` (piecewise constant, ``lr_drops``),
    "adam" (``adamw``, ``adam-l2``, ``lion``, ``adamc``, ``rv-adamw``, ``rv-lion``)
    :func:`warmup_linear_schedule`; ``warmup_frac`` is the encoder's linear LR warmup for every
    optimizer (recipes: 0 for the SGD family, 0.1 for AdamW). Weight decay: every encoder leaf
    for the SGD family (SIBERT's encoder is scale invariant throughout), matrices only for the
    Adam family (BERT's convention); ``wd_drops`` schedules it (:func:`wd_schedule`). The
    rotational variants (Kosson et al. 2024) rotate every encoder weight matrix / table
    (:func:`is_weight`, one rotating vector per tensor) at the inner optimizer's equilibrium
    angle from step 0; vectors (biases) get the inner optimizer."""
    entry = registry.get(cfg.optimizer)
    if entry.schedule == "adam":
        enc_lr = warmup_linear_schedule(cfg.lr, cfg.steps, cfg.warmup_frac)
    else:
        enc_lr = sgd_schedule(cfg.lr, cfg.steps, cfg.lr_drop_fractions, cfg.warmup_frac)
    wd = 0.0 if entry.weight_decay == "none" else wd_schedule(cfg.weight_decay, cfg.steps, cfg.wd_drop_fractions)
    hp = {"C": cfg.clip_C, "b1": cfg.adam_b1, "b2": cfg.adam_b2, "momentum": cfg.momentum,
          "mask": _matrix_mask if entry.schedule == "adam" else None, "peak_lr": cfg.lr,
          "rotate": weight_mask, "per_neuron": False}
    return registry.make_from(cfg.optimizer, enc_lr, wd, hp), enc_lr


def make_optimizer(cfg: TrainConfig):
    """(tx, encoder LR schedule, head LR schedule) for ``cfg``."""
    enc, enc_lr = make_encoder_optimizer(cfg)
    head, head_lr = make_head_optimizer(cfg)
    return encoder_head_transform(enc, head), enc_lr, head_lr


def predicted_equilibrium_angle(cfg: TrainConfig, lr: float, step: Optional[int] = None):
    """Rotational-equilibrium angle per step of the encoder optimizer at LR ``lr`` (None for
    plain SGD, which has no equilibrium): sqrt(2 eta lambda) for the SGD family,
    sqrt(2 eta lambda (1 - b1)/(1 + b1)) for AdamW (:func:`scaleinv.registry.predict`); lambda is the WD of
    ``step`` under ``wd_drops`` (``step`` None: the initial WD)."""
    if registry.get(cfg.optimizer).weight_decay == "none" or cfg.weight_decay == 0:
        return None
    wd = wd_schedule(cfg.weight_decay, cfg.steps, cfg.wd_drop_fractions)
    lam = float(wd(step)) if callable(wd) and step is not None else cfg.weight_decay
    angle = registry.predict(cfg.optimizer, lr, lam, b1=cfg.adam_b1, b2=cfg.adam_b2, momentum=cfg.momentum)["angle"]
    return None if angle is None else float(angle)


# ----------------------------------------------------------------------------- mesh
def maybe_initialize_distributed() -> bool:
    """Multi-host: ``jax.distributed.initialize`` when JAX_COORDINATOR_ADDRESS is set, with
    JAX_NUM_PROCESSES / JAX_PROCESS_ID (else JAX's cluster auto-detection: SLURM, MPI, TPU...),
    JAX's heartbeat / shutdown timeouts at the peer timeout (:func:`sibert.peers.peer_timeout`:
    ``--peer-timeout``, default 120 s), reporting to a supervising parent (:mod:`sibert.peers`)."""
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not addr:
        return False
    if not getattr(maybe_initialize_distributed, "_done", False):
        # CPU processes exchange collectives over gloo (jax 0.10's default; older versions had
        # "none", with which a multi-process CPU mesh cannot run)
        if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "", "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        from sibert import peers

        n, pid = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        # a dead / silent peer is declared after the peer timeout (JAX's heartbeat); the join
        # deadline is the supervising parent's (sibert.peers), so JAX's own comes a little later
        t = max(1, math.ceil(peers.peer_timeout()))
        peers.notify("connecting")
        jax.distributed.initialize(coordinator_address=addr, num_processes=int(n) if n else None,
                                   process_id=int(pid) if pid else None, initialization_timeout=t + 30,
                                   heartbeat_timeout_seconds=t, shutdown_timeout_seconds=t)
        peers.notify("joined")
        maybe_initialize_distributed._done = True
    return True


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def param_sharding(mesh: Mesh, tree, fsdp: bool):
    """Replicated, or (fsdp) leading axis sharded over ``data`` where it divides evenly."""
    n = mesh.shape["data"]

    def spec(x):
        if fsdp and getattr(x, "ndim", 0) >= 1 and x.shape[0] % n == 0 and x.shape[0] >= n and n > 1:
            return NamedSharding(mesh, P("data"))
        return NamedSharding(mesh, P())

    return jax.tree.map(spec, tree)


def shard_batch(batch: Dict[str, np.ndarray], mesh: Mesh):
    """Global numpy batch -> global jax.Arrays sharded over ``data``; each process contributes
    its contiguous slice of rows (identical global batch on every host)."""
    sh = NamedSharding(mesh, P("data"))
    npr, pid = jax.process_count(), jax.process_index()

    def put(x):
        rows = x.shape[0] // npr
        local = x[pid * rows:(pid + 1) * rows]
        return jax.make_array_from_process_local_data(sh, local, x.shape)

    return {k: put(v) for k, v in batch.items()}


def device_batch(data, mesh: Mesh, batch_size: int, step: int, seed: Optional[int] = None):
    """Training batch of ``step`` (``seed`` given) or held-out batch ``step`` as global jax.Arrays
    sharded over ``data``. A source that reads only this process's rows
    (``reads_process_share``: :class:`sibert.shards.ShardData`) is asked for just those (the rows
    :func:`shard_batch` would have kept); any other gives the global batch to :func:`shard_batch`."""
    if not getattr(data, "reads_process_share", False):
        return shard_batch(data.train_batch(step, batch_size, seed) if seed is not None
                           else data.heldout_batch(step, batch_size), mesh)
    share = (jax.process_index(), jax.process_count())
    local = (data.train_batch(step, batch_size, seed, *share) if seed is not None
             else data.heldout_batch(step, batch_size, *share))
    sh = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sh, v, (batch_size, *v.shape[1:])) for k, v in local.items()}


# ----------------------------------------------------------------------------- steps
def is_weight(path, x) -> bool:
    """A weight matrix / embedding table: ndim >= 2 and not a bias (SIBERT's q/k/v biases are
    (heads, head_dim) arrays that start at zero)."""
    return getattr(x, "ndim", 0) >= 2 and path_name(path).rsplit("/", 1)[-1] != "bias"


def weight_mask(tree):
    """Bool pytree of :func:`is_weight` (the rotational leaves of rv-sgd-wd / rv-adamw)."""
    return jax.tree_util.tree_map_with_path(is_weight, tree)


def layer_angles(old, new) -> Dict[str, Any]:
    """Per-layer angular update angle(W_t, W_{t+1}) and norm ||W_{t+1}|| of every encoder weight
    matrix / table (:func:`is_weight`), keys ``angle/<path>`` and ``norm/<path>`` (path e.g.
    ``layer_0/attention/query/kernel``); at rotational equilibrium each angle approaches the
    optimizer's predicted value (:func:`predicted_equilibrium_angle`)."""
    out = {}
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(old)[0], jax.tree.leaves(new)):
        if is_weight(path, a):
            name = path_name(path)
            out[f"angle/{name}"] = leaf_angle(a, b)
            out[f"norm/{name}"] = jnp.linalg.norm(jnp.ravel(b))
    return out


def build_steps(cfg: TrainConfig, model: MLMModel, tx, enc_lr: Schedule):
    def train_step(state, batch):
        rng, sub = jax.random.split(state["rng"])
        drop_rng = sub if cfg.dropout > 0 else None
        params = state["params"]
        (loss, aux), grads = jax.value_and_grad(
            lambda p: mlm_loss(model, p, batch, drop_rng), has_aux=True)(params)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        diag = step_diagnostics(params[ENCODER], new_params[ENCODER], grads[ENCODER],
                                enc_lr(state["step"]), opt_state)
        metrics = {"loss": loss, "accuracy": aux["accuracy"], "lr": enc_lr(state["step"]),
                   "head_grad_norm": tree_norm(grads[HEAD]),
                   "params_finite": jnp.isfinite(tree_norm(new_params)), **diag}
        if cfg.log_layer_angles:
            metrics.update(layer_angles(params[ENCODER], new_params[ENCODER]))
        new_state = {"params": new_params, "opt_state": opt_state, "step": state["step"] + 1, "rng": rng}
        return new_state, metrics

    def eval_step(params, batch):
        loss, aux = mlm_loss(model, params, batch)
        return {"loss_sum": loss * aux["num_predictions"], "correct": aux["accuracy"] * aux["num_predictions"],
                "n": aux["num_predictions"]}

    return train_step, eval_step


# One program for a norm of sharded parameters. Eagerly, ``tree_norm`` dispatches one small
# program per leaf; over an FSDP mesh each contains an all-reduce and they are independent, so
# XLA:CPU may run several at once. With fake CPU devices (one client thread per device) that
# deadlocks: the threads of some devices wait in one program's all-reduce for devices whose
# threads wait in another's (seen under load: 8-device test hung until its timeout).
_jit_tree_norm = jax.jit(tree_norm)


EVAL_PROGRESS_MIN_BATCHES = 20   # a held-out evaluation at least this long shows its progress


def evaluate(eval_fn, params, data: MLMData, cfg: TrainConfig, mesh: Mesh, desc: str = "eval") -> Dict[str, float]:
    """Held-out loss / accuracy over ``cfg.eval_batches`` batches. From
    :data:`EVAL_PROGRESS_MIN_BATCHES` batches on (and with ``cfg.progress``, process 0) the
    batches done are shown on stderr (:mod:`scaleinv.progress`: a bar on a terminal, a plain line
    every tenth of the batches in a log), never on stdout (which holds only the JSON summary)."""
    from scaleinv.progress import Progress

    show = cfg.progress and cfg.eval_batches >= EVAL_PROGRESS_MIN_BATCHES and jax.process_index() == 0
    bar = Progress(cfg.eval_batches, desc, unit="batch", file=sys.stderr,
                   every=max(1, -(-cfg.eval_batches // 10))) if show else None
    tot = {"loss_sum": 0.0, "correct": 0.0, "n": 0.0}
    try:
        for j in range(cfg.eval_batches):
            out = eval_fn(params, device_batch(data, mesh, cfg.batch_size, j))
            for k in tot:
                tot[k] += float(out[k])
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
    return {"heldout_loss": tot["loss_sum"] / tot["n"], "heldout_accuracy": tot["correct"] / tot["n"]}


# ----------------------------------------------------------------------------- checkpoints
# (orbax manager, save, newest-intact restore: sibert.checkpoints, re-exported above)
def _read_jsonl_upto(path: Path, max_step: int):
    """Rows of a metrics/eval log with step <= max_step (a torn last line, from a kill in the
    middle of a write, is dropped)."""
    rows = []
    if path.exists():
        for l in path.read_text().splitlines():
            try:
                r = json.loads(l)
            except ValueError:
                continue
            if r.get("step", max_step + 1) <= max_step:
                rows.append(r)
    return rows


def _truncate_jsonl(path: Path, max_step: int):
    if path.exists():
        path.write_text("".join(json.dumps(r) + "\n" for r in _read_jsonl_upto(path, max_step)))


# ----------------------------------------------------------------------------- main loop
def _to_py(d):
    return {k: (bool(v) if np.asarray(v).dtype == bool else float(v)) for k, v in d.items()}


def init_state(cfg: TrainConfig, mcfg, tx, mesh: Mesh, key):
    """Initial train state {params, opt_state, step, rng} placed on ``mesh``, and its shardings."""
    init_key, rng = jax.random.split(key)
    params = init_params(mcfg, init_key, cfg.seq_len, cfg.init_scale)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32), "rng": rng}
    state_sh = {"params": param_sharding(mesh, state["params"], cfg.fsdp),
                "opt_state": param_sharding(mesh, state["opt_state"], cfg.fsdp),
                "step": NamedSharding(mesh, P()), "rng": NamedSharding(mesh, P())}
    return jax.device_put(state, state_sh), state_sh


def _cleanup_unstarted(run_dir: Path, created: bool, lock) -> None:
    """After an error before the first step: remove what this call created (nothing else)."""
    if lock is not None:
        lock.release()
    if created and run_dir.is_dir():
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)


def train(cfg: TrainConfig, run_dir, resume: bool = False, log: Callable[[str], None] = None,
          data: Optional[MLMData] = None, stop=None,
          on_rows: Optional[Callable[[str, list], None]] = None) -> Dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns the summary dict (also ``summary.json``).

    Before anything is written: the config is validated, ``run_dir`` checked (a directory or
    creatable), the memory estimated from ``jax.eval_shape`` (:mod:`sibert.preflight`), on
    resume the recipe compared with the run's ``config.json`` (:mod:`sibert.resume`), and
    ``batch_size`` checked against the corpus. Then ``run_dir/.lock`` is taken
    (:mod:`sibert.runlock`; :class:`~sibert.runlock.RunLocked` if another trainer holds it).
    Any error before the first step leaves ``run_dir`` as it was (a directory this call created
    is removed again). ``resume=True``: continue from the newest intact checkpoint
    (:func:`sibert.checkpoints.restore_latest_intact`; damaged newer ones are reported),
    from step 0 if the run never reached a checkpoint; :class:`CheckpointError` if
    checkpoints exist but none is intact. Resuming a finished run changes nothing and returns
    its summary. ``stop``: a :class:`sibert.preempt.StopSignals` (module docstring: preemption).
    ``on_rows(kind, rows)``: called (process 0) with the rows just written to
    ``metrics.jsonl`` (kind ``"train"``, after each fetch) and ``eval.jsonl`` (``"eval"``);
    ``scaleinv train --tensorboard`` writes them as TensorBoard events."""
    from sibert.preflight import check_cache_dir, check_memory, check_run_dir
    from sibert.resume import check_same_recipe, saved_config
    from sibert.runlock import RunLock

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    validate(cfg)
    maybe_initialize_distributed()
    mesh = make_mesh()
    ndev = mesh.shape["data"]
    if cfg.batch_size % ndev:
        raise ConfigError(f"batch_size: must be divisible by the number of devices ({ndev}), got {cfg.batch_size}")
    run_dir = check_run_dir(run_dir)
    check_cache_dir(cfg.cache_dir)
    is_main = jax.process_index() == 0
    check_memory(cfg, ndev, jax.local_device_count())
    cfg_path = run_dir / "config.json"
    if resume and cfg_path.is_file():
        check_same_recipe(saved_config(json.loads(cfg_path.read_text())), cfg)
    if data is None and cfg.data_dir:   # prepared shards, read lazily, this process's rows only
        from sibert.shards import load_shard_data
        data = load_shard_data(cfg)
    if data is None:
        data = load_mlm_data(cfg.source, cfg.vocab_size, cfg.seq_len, cfg.heldout_fraction,
                             cfg.mask_prob, cfg.cache_dir or None, log=log)
    if cfg.batch_size > len(data.train):
        raise ConfigError(f"batch_size: {cfg.batch_size} is larger than the training corpus ({len(data.train)} "
                          f"rows of {cfg.seq_len} tokens; every batch would repeat rows); allowed: 1..{len(data.train)}")
    held_max = -(-len(data.heldout) // cfg.batch_size)   # batches of distinct held-out rows
    if cfg.eval_batches > held_max:   # beyond that every batch repeats rows (and evaluation runs silently long)
        raise ConfigError(f"eval_batches: {cfg.eval_batches} is more than the held-out set provides "
                          f"({len(data.heldout)} rows of {cfg.seq_len} tokens = {held_max} batches of "
                          f"{cfg.batch_size}); allowed: 1..{held_max}")

    created, lock, mngr = not run_dir.exists(), None, None
    metrics_path, eval_path, summary_path = run_dir / "metrics.jsonl", run_dir / "eval.jsonl", run_dir / "summary.json"
    try:
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = RunLock(run_dir, log)
            try:
                lock.acquire()
            except Exception:
                lock = None
                created = False  # the directory may be the other trainer's: never remove it
                raise
            if stop is not None:
                stop.on_abandon(lock.release)
        mcfg = ModelConfig.from_train(cfg)
        model = MLMModel(mcfg)
        tx, enc_lr, _ = make_optimizer(cfg)
        state, state_sh = init_state(cfg, mcfg, tx, mesh, jax.random.PRNGKey(cfg.seed))
        mngr = checkpoint_manager(run_dir, cfg)
        start, last_eval = 0, None
        if resume:
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
            try:
                restored, meta, _ = restore_latest_intact(mngr, abstract, run_dir, log=log, move_damaged=is_main)
            except CheckpointError:
                mngr.close()
                raise
            if restored is None:
                log(f"resume: no checkpoint in {run_dir / 'checkpoints'} (stopped before the first one); "
                    f"starting from step 0")
            else:
                state, start = restored, int(meta["data_position"])
                if start > cfg.steps:
                    mngr.close()
                    raise ConfigError(f"--resume: the newest intact checkpoint is step {start} > steps={cfg.steps}")
                log(f"resumed from step {start}")
                prev = _read_jsonl_upto(eval_path, start)
                last_eval = prev[-1] if prev and prev[-1]["step"] == start else None
                if start == cfg.steps and summary_path.is_file():
                    old = json.loads(summary_path.read_text())
                    if old.get("status") == "ok" and old.get("steps_done") == cfg.steps:
                        log(f"run already complete at step {start}: nothing to do (summary.json unchanged)")
                        mngr.close()
                        if lock is not None:
                            lock.release()
                        return old
    except BaseException:
        if mngr is not None:
            close_manager(mngr)
        _cleanup_unstarted(run_dir, created, lock)
        raise

    if stop is not None:   # from here on a signal stops the loop at a step boundary, with a checkpoint
        stop.deferred, stop.where = True, f"at step {start}"
    try:
        if is_main:
            if data.tokenizer_path:  # self-contained run directory (sibert.runs)
                save_tokenizer(run_dir, data.tokenizer_path)
            if start == 0:
                cfg_path.write_text(json.dumps(cfg.to_dict(), indent=1))
                for p in (metrics_path, eval_path):
                    p.write_text("")
            else:
                _truncate_jsonl(metrics_path, start - 1)
                _truncate_jsonl(eval_path, start)
        return _loop(cfg, run_dir, mesh, model, tx, enc_lr, state, state_sh, mngr, data, start, last_eval,
                     is_main, log, metrics_path, eval_path, summary_path, stop, on_rows if is_main else None)
    finally:
        if lock is not None:
            lock.release()


def _loop(cfg, run_dir, mesh, model, tx, enc_lr, state, state_sh, mngr, data, start, last_eval, is_main, log,
          metrics_path, eval_path, summary_path, stop=None, on_rows=None):
    from scaleinv.progress import Progress

    ndev = mesh.shape["data"]
    train_step, eval_step = build_steps(cfg, model, tx, enc_lr)
    batch_sh = {k: NamedSharding(mesh, P("data")) for k in ("tokens", "mlm_positions", "mlm_labels", "mlm_weights")}
    step_fn = jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                      donate_argnums=0)
    eval_fn = jax.jit(eval_step, in_shardings=(state_sh["params"], batch_sh))

    baseline = data.unigram_baseline()
    tokens_per_step = cfg.batch_size * cfg.seq_len
    status, bad_step = "ok", None
    n_clipped = n_logged = 0
    t_start = time.time()
    mfile = open(metrics_path, "a") if is_main else None
    efile = open(eval_path, "a") if is_main else None
    # a live bar on a terminal; in a log file one plain line every steps/20 (scaleinv.progress)
    bar = Progress(cfg.steps, f"train {cfg.model}/{cfg.optimizer}", initial=start) \
        if cfg.progress and is_main else None
    from sibert.preempt import Preempted

    orbax_errors = quiet_orbax_errors()   # a failed background save: one line from us, not orbax's tracebacks
    orbax_errors.__enter__()
    try:
        # The host does not wait for each step: steps are dispatched asynchronously, the next
        # batch is built while the current step runs (prefetch), and the metrics of up to
        # FETCH_EVERY steps are fetched in one transfer, before any evaluation or checkpoint
        # (so a non-finite step is still caught before its state can be saved), then written one
        # line per step as before. tokens/s is the mean over the fetched window.
        t_prev = time.time()
        pending = []
        batch = device_batch(data, mesh, cfg.batch_size, start, cfg.seed) if start < cfg.steps else None
        for step in range(start, cfg.steps):
            state, m_dev = step_fn(state, batch)
            pending.append((step, m_dev))
            done = step + 1
            if done < cfg.steps:
                batch = device_batch(data, mesh, cfg.batch_size, done, cfg.seed)
            at_eval = done % cfg.eval_every == 0 or done == cfg.steps
            at_ckpt = done % cfg.ckpt_every == 0 or done == cfg.steps
            stopping = stop is not None and stop.requested and done < cfg.steps
            if not (at_eval or at_ckpt or stopping or len(pending) >= FETCH_EVERY):
                continue
            fetched = jax.device_get([m_ for _, m_ in pending])
            written = []
            now = time.time()
            tps = tokens_per_step * len(pending) / max(now - t_prev, 1e-9)
            t_prev = now
            for (s_, _), m in zip(pending, fetched):
                m = _to_py(m)
                m["tokens_per_s"] = tps
                if not (math.isfinite(m["loss"]) and m["params_finite"]):
                    status, bad_step = "nonfinite", s_
                    log(f"non-finite loss/parameters at step {s_} (loss={m['loss']}); stopping, the last "
                        f"good checkpoint is step {mngr.latest_step()}")
                    break
                n_logged += 1
                n_clipped += int(m.get("clipped", False))
                if mfile:
                    rec = {"step": s_, **{k: v for k, v in m.items() if k != "params_finite"}}
                    mfile.write(json.dumps(rec) + "\n")
                    written.append(rec)
            if mfile:
                mfile.flush()
            if on_rows and written:
                on_rows("train", written)
            n_window, pending = len(pending), []
            if status != "ok":
                break
            if at_eval:
                last_eval = {"step": done, **evaluate(eval_fn, state["params"], data, cfg, mesh, f"eval at step {done}")}
                if efile:
                    efile.write(json.dumps(last_eval) + "\n")
                    efile.flush()
                if on_rows:
                    on_rows("eval", [last_eval])
            if at_ckpt and not stopping:
                save_checkpoint(mngr, state, done)
            if stopping:
                # preempted: the in-flight save is finished, then a checkpoint at this step
                stop.where = f"at step {done}"
                try:
                    save_checkpoint(mngr, state, done)
                    finish_checkpoints(mngr, done)
                except CheckpointWriteError as e:
                    raise Preempted(stop.signum, step=done, problem=str(e)) from None
                raise Preempted(stop.signum, step=done, checkpoint=done)
            if bar:
                bar.update(n_window, loss=f"{m['loss']:.3f}",
                           heldout=f"{last_eval['heldout_loss']:.3f}" if last_eval else "-")
        if status == "ok" and start == cfg.steps and last_eval is None:
            # resumed at the final checkpoint without its evaluation row: evaluate it now
            last_eval = {"step": cfg.steps, **evaluate(eval_fn, state["params"], data, cfg, mesh,
                                                       f"eval at step {cfg.steps}")}
            if efile:
                efile.write(json.dumps(last_eval) + "\n")
        finish_checkpoints(mngr, cfg.steps)   # the final save must have been written
    except Exception as e:
        from sibert import peers
        peers.report_failure(e)   # multi-host: a collective failed because a peer is gone (ends here)
        raise
    finally:
        if bar:
            bar.close()
        close_manager(mngr)   # never raises; wakes orbax threads a failed save left waiting
        orbax_errors.__exit__(None, None, None)
        for f in (mfile, efile):
            if f:
                f.close()
    wall = time.time() - t_start
    summary = {"status": status, "nonfinite_step": bad_step, "model": cfg.model, "optimizer": cfg.optimizer,
               "steps_done": bad_step if status != "ok" else int(jax.device_get(state["step"])),
               "steps": cfg.steps,
               "init_scale": cfg.init_scale, "wall_s": wall, "devices": ndev,
               "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
               "processes": jax.process_count(),
               "clip_rate_this_session": n_clipped / max(n_logged, 1),
               "final_eval": last_eval, "unigram_baseline": baseline,
               # after a non-finite step the (donated) state is gone: no norm to report
               "encoder_x_norm": None if status != "ok" else float(_jit_tree_norm(state["params"][ENCODER])),
               "config": cfg.to_dict()}
    if is_main:
        summary_path.write_text(json.dumps(summary, indent=1))
    return summary
