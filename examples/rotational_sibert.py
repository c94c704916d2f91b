"""Rotational equilibrium on SIBERT: per-layer / per-neuron angular updates vs the theory.

Trains the SIBERT encoder (``sibert`` tiny preset dimensions, MLM head with AdamW as usual)
with one or more encoder optimizers and logs, every step, the angular update and norm of every
encoder matrix (per layer and per neuron, :func:`scaleinv.angular.angular_summary`) next to the
predicted equilibrium angle (Kosson et al. 2024, :mod:`scaleinv.theory`):

    sgd-wd   : sqrt(2 eta lambda)                       (eta, lambda = --lr, --wd)
    adamw    : sqrt(2 eta lambda (1 - b1)/(1 + b1))
    rv-adamw : the same, enforced from step 0 by scaleinv.rotational, per layer
               (``per_neuron=False``: every encoder kernel is one rotating vector with a fixed
               norm; SIBERT's q/k/v kernels are (in, heads, head_dim), so "rows" are not single
               output features there). Biases and embeddings get plain AdamW.

The measured quantity is the RMS over the encoder kernels of the per-layer angle
angle(W_t, W_{t+1}) (``layer/<path>/angle`` in the log; per-neuron statistics are logged too).

The equilibrium is reached after ~1/(eta lambda) steps (1000 for the defaults), so use
``--steps`` >= 3/(eta lambda) to see it; the rotational variant is there from the start.

    python examples/rotational_sibert.py --steps 3000 --out runs/rotational_sibert
    python examples/rotational_sibert.py --steps 20 --optimizers adamw,rv-adamw   # smoke test

Writes ``OUT/<optimizer>.jsonl`` (one record per step) and ``OUT/angles.png``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OPTIMIZERS = ("sgd-wd", "adamw", "rv-adamw")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--optimizers", default="sgd-wd,adamw,rv-adamw", help=f"comma list of {OPTIMIZERS}")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=None, help="encoder LR (default: 0.1 SGD, 1e-3 AdamW)")
    p.add_argument("--wd", type=float, default=None, help="encoder weight decay (default: 1e-2 SGD, 0.1 AdamW)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--source", default="wiki-offline", help="sibert data source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/rotational_sibert")
    args = p.parse_args(argv)
    opts = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    bad = [o for o in opts if o not in OPTIMIZERS]
    if bad:
        p.error(f"--optimizers: unknown {bad}; allowed: {', '.join(OPTIMIZERS)}")
    args.optimizers = opts
    return args


def main(argv=None) -> int:
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from scaleinv import theory
    from scaleinv.angular import angular_summary
    from scaleinv.optim import sgd_wd
    from scaleinv.rotational import rotational_adamw
    from sibert.config import preset
    from sibert.data import load_mlm_data
    from sibert.model import ENCODER, HEAD, MLMModel, ModelConfig, init_params, mlm_loss
    from toyproblems.plotting import new_figure, save_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = preset("tiny")
    mcfg = ModelConfig.from_train(cfg)
    mcfg = ModelConfig(**{**mcfg.__dict__, "hidden": args.hidden, "ffn": 4 * args.hidden})
    data = load_mlm_data(args.source, cfg.vocab_size, cfg.seq_len, cfg.heldout_fraction, cfg.mask_prob,
                         log=print)
    model = MLMModel(mcfg)
    matrices = lambda tree: jax.tree.map(lambda x: x.ndim >= 2, tree)   # noqa: E731

    def kernels(tree):
        return jax.tree_util.tree_map_with_path(lambda p, x: str(getattr(p[-1], "key", "")) == "kernel", tree)
    curves = {}
    for name in args.optimizers:
        sgd = name == "sgd-wd"
        lr = args.lr if args.lr is not None else (0.1 if sgd else 1e-3)
        wd = args.wd if args.wd is not None else (1e-2 if sgd else 0.1)
        b1 = cfg.adam_b1
        target = float(theory.equilibrium_angle_sgd(lr, wd) if sgd else theory.equilibrium_angle_adamw(lr, wd, b1))
        if name == "sgd-wd":
            enc = sgd_wd(lr, wd)
        elif name == "adamw":
            enc = optax.adamw(lr, b1, cfg.adam_b2, weight_decay=wd, mask=matrices)
        else:
            enc = rotational_adamw(lr, wd, b1, cfg.adam_b2, per_neuron=False, rotate=kernels)
        head = optax.adamw(cfg.head_lr, b1, cfg.adam_b2, weight_decay=cfg.head_weight_decay, mask=matrices)
        tx = optax.multi_transform({ENCODER: enc, HEAD: head},
                                   lambda p: {k: jax.tree.map(lambda _: k, v) for k, v in p.items()})
        params = init_params(mcfg, jax.random.PRNGKey(args.seed), cfg.seq_len)
        state = tx.init(params)

        @jax.jit
        def step(params, state, batch):
            (loss, _), g = jax.value_and_grad(lambda p: mlm_loss(model, p, batch), has_aux=True)(params)
            u, state = tx.update(g, state, params)
            new = optax.apply_updates(params, u)
            diag = angular_summary(params[ENCODER], new[ENCODER], neuron_axis=-1)
            return new, state, loss, diag

        log_path = out / f"{name}.jsonl"
        t0 = time.time()
        rms_per_step = []
        with log_path.open("w") as f:
            for t in range(args.steps):
                batch = {k: jnp.asarray(v) for k, v in data.train_batch(t, args.batch_size, args.seed).items()}
                params, state, loss, diag = step(params, state, batch)
                rec = {"step": t, "loss": float(loss), "target_angle": target,
                       **{k: float(v) for k, v in diag.items()}}
                f.write(json.dumps(rec) + "\n")
                layer_angles = [v for k, v in rec.items() if k.startswith("layer/") and k.endswith("kernel/angle")]
                rms_per_step.append(float(np.sqrt(np.mean(np.square(layer_angles)))) if layer_angles else np.nan)
        curves[name] = (np.array(rms_per_step), target)
        late = np.array(rms_per_step[len(rms_per_step) // 2:])
        print(f"{name}: lr={lr:g} wd={wd:g} target angle {target:.4g}; RMS per-layer angle over encoder "
              f"kernels, 2nd half: {np.sqrt(np.nanmean(late**2)):.4g} ({time.time() - t0:.0f} s) -> {log_path}")
    fig, ax = new_figure()
    for i, (name, (c, target)) in enumerate(curves.items()):
        ax.plot(np.arange(len(c)), c, color=f"C{i}", lw=1, label=f"{name} (measured)")
        ax.axhline(target, color=f"C{i}", ls="--", lw=1, label=f"{name} equilibrium (theory)")
    ax.set(yscale="log", xlabel="step", ylabel="RMS per-layer angle, encoder kernels (rad)",
           title="SIBERT encoder: angular update vs rotational equilibrium")
    ax.legend(fontsize=7)
    save_figure(fig, out / "angles.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
