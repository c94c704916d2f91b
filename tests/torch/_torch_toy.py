"""A shared float64 toy for the torch <-> JAX agreement tests.

Two scale-invariant weight matrices and a head vector:
    pred = ((x W1^T / ||W1||) W2^T / ||W2||) h,      loss = mean((pred - y)^2)
on fixed minibatches, plus heavy-tailed (Student-t, 2 dof) noise added to the gradients of W1
and W2 so that relative global clipping fires on some steps and not on others. Every random
number is drawn once with NumPy and fed to both frameworks.
"""
from __future__ import annotations

import numpy as np

SHAPES = {"W1": (8, 5), "W2": (3, 8), "head": (3,)}


def make_toy(steps: int, seed: int = 0, batch: int = 16, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 5))
    y = X @ rng.standard_normal(5)
    idx = rng.integers(0, 64, size=(steps, batch))
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    noise_w = {k: noise * rng.standard_t(2, size=(steps,) + SHAPES[k]) for k in ("W1", "W2")}
    return {"X": X, "y": y, "idx": idx, "params": params, "noise": noise_w}


def jax_loss(params, xb, yb):
    import jax.numpy as jnp
    z = xb @ params["W1"].T / jnp.linalg.norm(params["W1"])
    z = z @ params["W2"].T / jnp.linalg.norm(params["W2"])
    return jnp.mean((z @ params["head"] - yb) ** 2)


def torch_loss(params, xb, yb):
    import torch
    z = xb @ params["W1"].T / torch.linalg.norm(params["W1"])
    z = z @ params["W2"].T / torch.linalg.norm(params["W2"])
    return torch.mean((z @ params["head"] - yb) ** 2)


def run_jax(toy, opt, steps: int, with_clip_state: bool = False):
    """Trajectory (steps+1, ...) per leaf of ``opt`` (an optax transform) on the toy, float64.

    Runs inside ``jax.enable_x64(True)`` only (the repository keeps x64 out of global state)."""
    import jax
    import jax.numpy as jnp
    import optax

    from scaleinv.optim import clip_stats

    with jax.enable_x64(True):
        X, y = jnp.asarray(toy["X"]), jnp.asarray(toy["y"])
        p0 = {k: jnp.asarray(v) for k, v in toy["params"].items()}
        noise = {k: jnp.asarray(v[:steps]) for k, v in toy["noise"].items()}

        def step(carry, inp):
            p, s = carry
            idx, nz = inp
            g = jax.grad(jax_loss)(p, X[idx], y[idx])
            g = {k: g[k] + nz[k] if k in nz else g[k] for k in g}
            u, s = opt.update(g, s, p)
            p = optax.apply_updates(p, u)
            cs = clip_stats(s)
            clipped = cs.clipped if cs is not None else jnp.zeros((), bool)
            return (p, s), (p, clipped)

        _, (traj, clipped) = jax.jit(lambda: jax.lax.scan(step, (p0, opt.init(p0)),
                                                          (jnp.asarray(toy["idx"][:steps]), noise)))()
        out = {k: np.concatenate([np.asarray(p0[k])[None], np.asarray(v)]) for k, v in traj.items()}
        return (out, np.asarray(clipped)) if with_clip_state else out


def torch_params(toy):
    import torch
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in toy["params"].items()}


def run_torch(toy, params, opt, steps: int, on_step=None):
    """Same loop in torch (float64): trajectory per leaf, and ``on_step(opt)`` results per step."""
    import torch
    X, y = torch.tensor(toy["X"]), torch.tensor(toy["y"])
    traj = {k: [v.detach().numpy().copy()] for k, v in params.items()}
    extra = []
    for t in range(steps):
        idx = torch.as_tensor(toy["idx"][t])
        opt.zero_grad()
        torch_loss(params, X[idx], y[idx]).backward()
        with torch.no_grad():
            for k, nz in toy["noise"].items():
                params[k].grad.add_(torch.as_tensor(nz[t]))
        opt.step()
        if on_step is not None:
            extra.append(on_step(opt))
        for k, v in params.items():
            traj[k].append(v.detach().numpy().copy())
    return {k: np.stack(v) for k, v in traj.items()}, extra


def max_rel_diff(a: dict, b: dict) -> float:
    """max over steps and leaves of ||a_t - b_t|| / ||b_t||."""
    worst = 0.0
    for k in b:
        num = np.linalg.norm((a[k] - b[k]).reshape(len(b[k]), -1), axis=1)
        den = np.linalg.norm(b[k].reshape(len(b[k]), -1), axis=1)
        worst = max(worst, float(np.max(num / den)))
    return worst
